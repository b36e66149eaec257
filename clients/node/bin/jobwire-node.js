#!/usr/bin/env node
// Launcher of the jobwire-node CLI. The CLI is src/cli.ts, compiled by `npm run build`
// (or `make setup-node`) to dist/src/cli.js.
import { main } from "../dist/src/cli.js";

process.exitCode = await main(process.argv.slice(2));
