// The layers of src/ and the project folders each may import: the single source
// for the dependency-cruiser rules and for the table in docs/ARCHITECTURE.md (a test
// keeps the two in step). Node built-ins and npm packages are always allowed.
'use strict';

/** @type {Record<string, string[]>} */
const layers = {
  util: [],
  block: ['util'],
  pdata: ['block', 'util'],
  thin: ['pdata', 'block', 'util'],
  tools: ['thin', 'pdata', 'block', 'util'],
  pool: ['thin', 'block', 'util'],
  nbd: ['util'],
  config: ['util'],
  archive: ['util'],
  mount: ['util'],
  driver: ['pool', 'thin', 'config', 'block', 'util'],
  graph: ['driver', 'pool', 'mount', 'archive', 'config', 'util'],
  rescue: ['graph', 'driver', 'mount', 'archive', 'nbd', 'tools', 'thin', 'block', 'util'],
  api: ['graph', 'driver', 'pool', 'tools', 'config', 'util'],
  plugin: ['api', 'graph', 'driver', 'pool', 'config', 'util'],
  daemon: [
    'plugin',
    'api',
    'graph',
    'mount',
    'archive',
    'nbd',
    'driver',
    'pool',
    'tools',
    'thin',
    'pdata',
    'config',
    'block',
    'util',
  ],
  cli: ['rescue', 'api', 'graph', 'driver', 'pool', 'tools', 'config', 'util'],
};

module.exports = { layers };
