import { rename, writeFile } from 'node:fs/promises';

/**
 * Service discovery for the cluster's Prometheus. Debian's Prometheus is built without
 * `kubernetes_sd_configs` (its package leaves discovery/kubernetes out; file and HTTP discovery
 * are in), so the harness does what a ServiceMonitor with `port: metrics` has the Prometheus
 * operator do: it reads the EndpointSlices and pods from the API server and writes every ready
 * endpoint of a Service port named `metrics` to a `file_sd_configs` file, labelled with its
 * namespace, Service and pod, and `release` from the pod's `herald.dev/release` label (as the
 * chart's ServiceMonitor relabels). Prometheus rereads the file when it changes.
 */

type Requester = (method: string, path: string) => Promise<{ status: number; json: unknown }>;

interface EndpointSlice {
  metadata: { namespace: string; labels?: Record<string, string> };
  ports?: { name?: string; port?: number }[] | null;
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean };
    targetRef?: { kind?: string; name?: string; namespace?: string };
  }[];
}

interface Pod {
  metadata: { namespace: string; name: string; labels?: Record<string, string> };
}

export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/** The target groups for these EndpointSlices and pods (pure, for the writer below). */
export function targetGroups(slices: readonly EndpointSlice[], pods: readonly Pod[]): TargetGroup[] {
  const podLabels = new Map(
    pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p.metadata.labels ?? {}]),
  );
  const groups: TargetGroup[] = [];
  for (const slice of slices) {
    const port = slice.ports?.find((p) => p.name === 'metrics')?.port;
    const service = slice.metadata.labels?.['kubernetes.io/service-name'];
    if (port === undefined || service === undefined) continue;
    for (const endpoint of slice.endpoints ?? []) {
      if (endpoint.conditions?.ready === false) continue;
      const labels: Record<string, string> = { namespace: slice.metadata.namespace, service };
      const ref = endpoint.targetRef;
      if (ref?.kind === 'Pod' && ref.name !== undefined) {
        labels['pod'] = ref.name;
        const release = podLabels.get(`${ref.namespace ?? slice.metadata.namespace}/${ref.name}`)?.[
          'herald.dev/release'
        ];
        if (release !== undefined) labels['release'] = release;
      }
      groups.push({ targets: endpoint.addresses.map((a) => `${a}:${port}`), labels });
    }
  }
  return groups.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

/**
 * Rewrites `file` every `intervalMs` with the current targets, when they changed. `stop()` ends
 * it. A failed request skips a round (the API server may be restarting); the file stays as it was.
 */
export function writeTargets(
  request: Requester,
  file: string,
  intervalMs: number,
): { stop(): Promise<void> } {
  let last = '';
  let stopped = false;
  let round: Promise<void> = Promise.resolve();
  const once = async () => {
    try {
      const [slices, pods] = await Promise.all([
        request('GET', '/apis/discovery.k8s.io/v1/endpointslices'),
        request('GET', '/api/v1/pods'),
      ]);
      if (slices.status !== 200 || pods.status !== 200) return;
      const text = `${JSON.stringify(
        targetGroups(
          (slices.json as { items: EndpointSlice[] }).items,
          (pods.json as { items: Pod[] }).items,
        ),
        null,
        2,
      )}\n`;
      if (text === last || stopped) return;
      await writeFile(`${file}.tmp`, text);
      await rename(`${file}.tmp`, file);
      last = text;
    } catch {
      // Next round.
    }
  };
  const timer = setInterval(() => {
    round = round.then(once);
  }, intervalMs);
  timer.unref();
  round = once();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await round;
    },
  };
}
