// Runs the worker locally under Miniflare (workerd, no account needed) in front of a gateway:
//   ORIGIN=http://127.0.0.1:8000 PURGE_TOKEN=… PORT=8787 npm run dev -w edge-worker
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

export function createWorker({ origin, purgeToken, port = 8787, host = "127.0.0.1" }) {
  return new Miniflare({
    modules: true,
    modulesRoot: SRC, // works from any current directory
    scriptPath: `${SRC}worker.js`,
    compatibilityDate: "2025-07-01",
    bindings: { ORIGIN: origin, PURGE_TOKEN: purgeToken ?? "" },
    host,
    port,
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const mf = createWorker({
    origin: process.env.ORIGIN ?? "http://127.0.0.1:8000",
    purgeToken: process.env.PURGE_TOKEN,
    port: Number(process.env.PORT ?? 8787),
  });
  const url = await mf.ready;
  console.log(`edge worker on ${url} in front of ${process.env.ORIGIN ?? "http://127.0.0.1:8000"}`);
  const stop = async () => {
    await mf.dispose();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
