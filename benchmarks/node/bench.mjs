// The Node.js side of the dbaccess benchmarks, driven by benchmarks/contenders/node.py.
//
//   node bench.mjs '{"client": "pg" | "postgres.js", "url": "postgres://...", "poolSize": 10,
//                    "rows": 20000, "fetchAllRepeats": 3, "tasks": 64, "queries": 100}'
//
// Opens the pool (all poolSize connections), prints {"ready": true, ...} on stdout, then
// answers each line {"workload": "concurrent" | "fetch_all"} read on stdin with one line
// {"seconds": s, "rows": n} (or {"error": "..."}), timed with process.hrtime. The process
// stays up between rounds, so that it is as warm as the Python contenders.
import { readFileSync } from 'node:fs';
import readline from 'node:readline';
import pg from 'pg';
import postgres from 'postgres';

const config = JSON.parse(process.argv[2]);

function version(name) {
  const file = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(file, 'utf8')).version;
}

// Reads every column, as the Python contenders do; counts the rows read.
function touch(row) {
  return row.id !== undefined && row.name !== undefined && row.value !== undefined &&
    row.flag !== undefined && row.created_at !== undefined ? 1 : 0;
}

function pgClient() {
  // idleTimeoutMillis 0: keep idle connections (the default closes them after 10 s,
  // and the other contenders' runs between two rounds take longer than that).
  const pool = new pg.Pool({ connectionString: config.url, max: config.poolSize, idleTimeoutMillis: 0 });
  const point = 'SELECT id, name, value, flag, created_at FROM bench_items WHERE id = $1';
  const all = 'SELECT id, name, value, flag, created_at FROM bench_items';
  return {
    version: version('pg'),
    ping: () => pool.query('SELECT 1'),
    point: async (id) => (await pool.query(point, [id])).rows,
    all: async () => (await pool.query(all)).rows,
    end: () => pool.end(),
  };
}

function postgresJsClient() {
  const sql = postgres(config.url, { max: config.poolSize, idle_timeout: 0, onnotice: () => {} });
  return {
    version: version('postgres'),
    ping: () => sql`SELECT 1`,
    point: (id) => sql`SELECT id, name, value, flag, created_at FROM bench_items WHERE id = ${id}`,
    all: () => sql`SELECT id, name, value, flag, created_at FROM bench_items`,
    end: () => sql.end({ timeout: 5 }),
  };
}

const client = config.client === 'pg' ? pgClient() : postgresJsClient();

async function concurrent() {
  const { rows, tasks, queries } = config;
  async function task(t) {
    let found = 0;
    for (let j = 0; j < queries; j++) {
      const result = await client.point(((t * queries + j) % rows) + 1);
      if (result.length) found += touch(result[0]);
    }
    return found;
  }
  const counts = await Promise.all(Array.from({ length: tasks }, (_, t) => task(t)));
  return counts.reduce((a, b) => a + b, 0);
}

async function fetchAll() {
  let seen = 0;
  for (let r = 0; r < config.fetchAllRepeats; r++) {
    const result = await client.all();
    for (const row of result) seen += touch(row);
  }
  return seen;
}

const workloads = { concurrent, fetch_all: fetchAll };

function reply(message) {
  process.stdout.write(JSON.stringify(message) + '\n');
}

try {
  // Open every connection of the pool now, as the Python pools do at connect time.
  await Promise.all(Array.from({ length: config.poolSize }, () => client.ping()));
} catch (error) {
  reply({ error: `cannot connect: ${error.message}` });
  process.exit(1);
}
reply({ ready: true, client: config.client, version: client.version, node: process.version });

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { workload } = JSON.parse(line);
  const run = workloads[workload];
  if (!run) {
    reply({ error: `no workload ${workload}` });
    continue;
  }
  try {
    const start = process.hrtime.bigint();
    const rows = await run();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    reply({ seconds, rows });
  } catch (error) {
    reply({ error: `${error.name}: ${error.message}` });
  }
}
await client.end();
