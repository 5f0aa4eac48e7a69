// ESLint (flat config) for the page's modules in static/. CommonJS, as
// package.json declares no module type.
const js = require("@eslint/js");
const globals = require("globals");

module.exports = [
  {
    ignores: ["node_modules/", "benchmarks/", ".venv/", "test-artifacts/", "instance/"],
  },
  js.configs.recommended,
  {
    files: ["static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: {
        ...globals.browser,
        io: "readonly", // the socket.io client, loaded by its own script tag
      },
    },
    rules: {
      "no-var": "error",
      "prefer-const": "error",
      eqeqeq: ["error", "smart"],
      "no-console": ["error", { allow: ["info", "warn", "error"] }],
      "no-unused-vars": ["error", { caughtErrors: "none" }],
    },
  },
  {
    // Node scripts: this file, and the test suite's socket.io clients.
    files: ["eslint.config.js", "tests/**/*.js"],
    languageOptions: { sourceType: "commonjs", globals: globals.node },
  },
];
