// Node-RED settings for e2e/benches/node_red.rs. The bench copies this file
// beside the pinned install ($HOME/.cache/weir/node-red), so `require('pg')`
// resolves there, and starts `node-red --settings settings.js --userDir
// <that dir> <flow file>`.
const { Pool } = require('pg');

module.exports = {
    // The flows hold no secret (anonymous broker, trust authentication):
    // keep any credentials file readable, unencrypted.
    credentialSecret: false,
    // A production instance, not a development one: no editor or admin API
    // (this lowers Node-RED's memory; it does not raise Weir's ratio).
    disableEditor: true,
    httpAdminRoot: false,
    httpNodeRoot: false,
    uiHost: '127.0.0.1',
    logging: { console: { level: 'info', metrics: false, audit: false } },
    // The PostgreSQL flow's function node takes this pool (pg 8, the
    // driver node-red-contrib-postgresql wraps) from the global context:
    // 2 connections, as weir-historian's 2 writers.
    functionGlobalContext: {
        pool: process.env.WEIR_NR_PG_URL
            ? new Pool({ connectionString: process.env.WEIR_NR_PG_URL, max: 2 })
            : null,
    },
};
