/**
 * NetworkPolicy semantics (networking.k8s.io/v1), enough to ask of rendered policies "may this pod
 * reach that one on this port?" the way an enforcing CNI answers: a connection needs the egress of
 * every policy selecting the source to allow it (if any selects it for Egress) and the ingress of
 * every policy selecting the destination likewise. Selectors: matchLabels and matchExpressions;
 * ipBlock: IPv4 CIDRs with `except`, matched against addresses outside the cluster only.
 */

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are free-form.
type Obj = Record<string, any>;

/** A pod, with its namespace's labels and its containers' ports. */
export interface PodEndpoint {
  readonly namespace: string;
  readonly namespaceLabels?: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly containerPorts?: readonly Obj[];
}
/** A pod or an address outside the cluster. */
export type Endpoint = PodEndpoint | { readonly ip: string };

/** A pod of a rendered Deployment, StatefulSet or Pod, in `namespace`. */
export function podEndpoint(workload: Obj, namespace: string): PodEndpoint {
  const template = workload.kind === 'Pod' ? workload : workload.spec.template;
  return {
    namespace,
    labels: template.metadata.labels ?? {},
    containerPorts: template.spec.containers.flatMap((c: Obj) => c.ports ?? []),
  };
}

export function selects(selector: Obj | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const ok =
      e.operator === 'In'
        ? has && e.values.includes(labels[e.key])
        : e.operator === 'NotIn'
          ? !has || !e.values.includes(labels[e.key])
          : e.operator === 'Exists'
            ? has
            : !has;
    if (!ok) return false;
  }
  return true;
}

const ipv4 = (ip: string): number => ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
function inCidr(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/') as [string, string];
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipv4(ip) / size) === Math.floor(ipv4(net) / size);
}

const nsLabels = (e: PodEndpoint) => ({
  'kubernetes.io/metadata.name': e.namespace,
  ...e.namespaceLabels,
});

function peerMatches(peer: Obj, other: Endpoint, policyNamespace: string): boolean {
  if (peer.ipBlock) {
    if (!('ip' in other)) return false;
    return (
      inCidr(other.ip, peer.ipBlock.cidr) &&
      !(peer.ipBlock.except ?? []).some((c: string) => inCidr(other.ip, c))
    );
  }
  if ('ip' in other) return false;
  const nsOk = peer.namespaceSelector
    ? selects(peer.namespaceSelector, nsLabels(other))
    : other.namespace === policyNamespace;
  return nsOk && selects(peer.podSelector, other.labels);
}

function portMatches(ports: Obj[] | undefined, port: number, protocol: string, dest: Endpoint): boolean {
  if (!ports || ports.length === 0) return true;
  return ports.some((p) => {
    if ((p.protocol ?? 'TCP') !== protocol) return false;
    if (p.port === undefined) return true;
    if (typeof p.port === 'number') return p.endPort ? port >= p.port && port <= p.endPort : port === p.port;
    // A named port means the destination container's port of that name.
    const named = 'ip' in dest ? undefined : dest.containerPorts?.find((c) => c.name === p.port);
    return named !== undefined && named.containerPort === port && (named.protocol ?? 'TCP') === protocol;
  });
}

/** Whether `policies` let `from` open a connection to `to` on `port`/`protocol`. */
export function allowed(
  policies: readonly Obj[],
  from: Endpoint,
  to: Endpoint,
  port: number,
  protocol: 'TCP' | 'UDP' = 'TCP',
): boolean {
  const side = (direction: 'Ingress' | 'Egress', self: Endpoint, peer: Endpoint): boolean => {
    if ('ip' in self) return true;
    const applying = policies.filter(
      (p) =>
        p.kind === 'NetworkPolicy' &&
        p.metadata.namespace === self.namespace &&
        (p.spec.policyTypes ?? ['Ingress']).includes(direction) &&
        selects(p.spec.podSelector, self.labels),
    );
    if (applying.length === 0) return true;
    return applying.some((p) =>
      ((direction === 'Ingress' ? p.spec.ingress : p.spec.egress) ?? []).some((rule: Obj) => {
        const peers: Obj[] | undefined = direction === 'Ingress' ? rule.from : rule.to;
        const peerOk =
          !peers || peers.length === 0 || peers.some((x) => peerMatches(x, peer, p.metadata.namespace));
        return peerOk && portMatches(rule.ports, port, protocol, to);
      }),
    );
  };
  return side('Egress', from, to) && side('Ingress', to, from);
}
