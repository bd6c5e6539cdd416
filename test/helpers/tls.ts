/**
 * Test PKI: a throwaway CA and certificates made with the `openssl` CLI in a temp dir.
 * Every leaf cert is valid for 127.0.0.1 and localhost, for both server and client auth (peers are both).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  caCert: string;
  /** PEM contents of a leaf certificate + key signed by the CA. */
  leaf(name: string): { cert: string; key: string; certPath: string; keyPath: string };
  /** A CA + leaf from a different, untrusted CA. */
  foreignLeaf(name: string): { cert: string; key: string; ca: string };
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function makeCa(dir: string, prefix: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${prefix} test CA`, '-keyout', `${prefix}-ca.key`, '-out', `${prefix}-ca.crt`], dir);
}

function makeLeaf(dir: string, caPrefix: string, name: string): void {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, [
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth,clientAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ].join('\n'));
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`,
    '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${caPrefix}-ca.crt`, '-CAkey', `${caPrefix}-ca.key`,
    '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', `${name}.crt`], dir);
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-pki-'));
  makeCa(dir, 'main');
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    dir,
    caCert: read('main-ca.crt'),
    leaf(name) {
      makeLeaf(dir, 'main', name);
      return { cert: read(`${name}.crt`), key: read(`${name}.key`), certPath: join(dir, `${name}.crt`), keyPath: join(dir, `${name}.key`) };
    },
    foreignLeaf(name) {
      makeCa(dir, 'foreign');
      makeLeaf(dir, 'foreign', name);
      return { cert: read(`${name}.crt`), key: read(`${name}.key`), ca: read('foreign-ca.crt') };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
