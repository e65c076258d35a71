// Dependency rules for src/: each layer imports only the layers below it (scripts/layers.cjs),
// and only through their public index.ts.
'use strict';

const { layers } = require('./scripts/layers.cjs');

const names = Object.keys(layers);

/** One rule per layer: it must not reach any layer outside its allowed list. */
const layerRules = names.map((layer) => {
  const forbidden = names.filter((other) => other !== layer && !layers[layer].includes(other));
  return {
    name: `layer-${layer}`,
    comment: `src/${layer} may import only: ${layers[layer].join(', ') || 'nothing in src'}`,
    severity: 'error',
    from: { path: `^src/${layer}/` },
    to: { path: `^src/(${forbidden.join('|')})/` },
  };
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'layer-unknown',
      comment: 'every folder under src/ is a layer listed in scripts/layers.cjs',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: `^src/(${names.join('|')})/` },
    },
    {
      name: 'public-index-only',
      comment: "another layer's internals are private: import its index.ts",
      severity: 'error',
      from: { path: '^src/([^/]+)/' },
      to: { path: '^src/[^/]+/', pathNot: ['^src/$1/', '^src/[^/]+/index\\.ts$'] },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-test-code-in-src',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
