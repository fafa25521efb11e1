/**
 * `node cluster-cleanup.ts <record>`: undoes what a one-node cluster changed on the machine (see
 * cluster-host.ts), for the watcher that runs it once the test process that owned the cluster is
 * gone. Does nothing when the record is gone (its cluster was stopped) or its owner still runs.
 */
import { cleanupHost, ownerAlive, readState } from './cluster-host.ts';

const file = process.argv[2];
if (file === undefined) {
  console.error('usage: node cluster-cleanup.ts <record>');
  process.exit(2);
}
const state = readState(file);
if (state !== undefined && !ownerAlive(state)) {
  try {
    await cleanupHost(state, (line) => console.error(`herald cluster cleanup: ${line}`));
  } catch (err) {
    console.error((err as Error).message);
    process.exit(1);
  }
}
