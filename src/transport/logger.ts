/**
 * The slice of a pino logger that the transport and log store use. Any pino logger fits; tests may pass none.
 */
export interface LoggerLike {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => {};

export const silentLogger: LoggerLike = { debug: noop, info: noop, warn: noop, error: noop };
