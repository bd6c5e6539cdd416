export { freePorts } from '../../src/testing/ports.js';
