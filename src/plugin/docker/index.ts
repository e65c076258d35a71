export {
  type DockerDriverOptions,
  DockerGraphDriver,
  type LayerBackend,
  type LayerCreateOptions,
  storageOptions,
} from './graph-driver.js';
export { PluginRequestError } from './protocol.js';
export {
  DEFAULT_DOCKER_PLUGIN_SOCKET,
  DockerPluginServer,
  type DockerPluginServerOptions,
  errorText,
} from './server.js';
