/**
 * The one-node cluster's addresses and the configuration files of its programs, as pure
 * functions of where they live. Every address is inside the cluster's network namespace; none
 * exists in the root namespace. TOOLING-NOTES.md ("A real one-node cluster") says why each
 * unusual setting is there.
 */

/** The node's address: on a veth inside the namespace (kubelet refuses loopback node IPs). */
export const NODE_IP = '10.240.0.2';
/** The other end of that veth, the namespace's default gateway (so Service addresses route). */
export const GATEWAY_IP = '10.240.0.1';
export const NODE_PREFIX = 24;
/** Pods of the node (the CNI bridge's subnet) and of the cluster (for kube-proxy's masquerade rule). */
export const POD_SUBNET = '10.244.0.0/24';
export const CLUSTER_CIDR = '10.244.0.0/16';
export const SERVICE_CIDR = '10.96.0.0/16';
/** The `kubernetes` Service's address (the first of SERVICE_CIDR): in the API server's certificate. */
export const API_SERVICE_IP = '10.96.0.1';
/** The cluster DNS Service's address (kube-system/kube-dns), which pods' resolv.conf names. */
export const DNS_SERVICE_IP = '10.96.0.10';
export const CLUSTER_DOMAIN = 'cluster.local';
export const NODE_NAME = 'herald-node';
export const API_PORT = 6443;
export const ETCD_PORT = 2379;
export const KUBELET_HEALTHZ_PORT = 10248;
export const PROXY_HEALTHZ_PORT = 10256;
/** CoreDNS's `ready` plugin, on the namespace's loopback. */
export const DNS_READY_PORT = 8181;
/** Traefik's entry point, on the node address: the Gateway's listener port must equal it. */
export const GATEWAY_PORT = 8000;
/** Traefik's own entry point (`/ping`), on the namespace's loopback. */
export const TRAEFIK_PING_PORT = 8082;
/** Prometheus's web port, on the namespace's loopback. */
export const PROMETHEUS_PORT = 9090;
/** The GatewayClass Traefik serves, and the Gateway the harness creates for routes to attach to. */
export const GATEWAY_CLASS = 'traefik';
export const GATEWAY = { namespace: 'default', name: 'herald-gateway', listener: 'http' } as const;

/** Where everything of one cluster lives, under its directory. */
export interface Layout {
  readonly root: string;
  readonly pki: string;
  readonly etcdData: string;
  readonly containerdConfig: string;
  readonly containerdRoot: string;
  readonly containerdState: string;
  readonly containerdSocket: string;
  readonly runcRoot: string;
  readonly cniConfDir: string;
  readonly cniDataDir: string;
  readonly kubeletRoot: string;
  readonly kubeletConfig: string;
  readonly podLogs: string;
  readonly resolvConf: string;
  readonly proxyConfig: string;
  readonly corefile: string;
  readonly prometheusConfig: string;
  readonly prometheusData: string;
  readonly prometheusTargets: string;
  /** Unix sockets of the bridge out of the namespace. */
  readonly sockets: string;
  /** Kubeconfig of each identity: `<dir>/<name>.kubeconfig`. */
  readonly kubeconfigs: string;
}

export function layout(root: string): Layout {
  const at = (p: string) => `${root}/${p}`;
  return {
    root,
    pki: at('pki'),
    etcdData: at('etcd'),
    containerdConfig: at('containerd/config.toml'),
    containerdRoot: at('containerd/root'),
    containerdState: at('containerd/state'),
    containerdSocket: at('containerd/containerd.sock'),
    runcRoot: at('containerd/runc'),
    cniConfDir: at('cni/net.d'),
    cniDataDir: at('cni/ipam'),
    kubeletRoot: at('kubelet'),
    kubeletConfig: at('kubelet.yaml'),
    podLogs: at('pod-logs'),
    resolvConf: at('resolv.conf'),
    proxyConfig: at('kube-proxy.yaml'),
    corefile: at('Corefile'),
    prometheusConfig: at('prometheus.yaml'),
    prometheusData: at('prometheus'),
    prometheusTargets: at('prometheus-targets.json'),
    sockets: at('sock'),
    kubeconfigs: at('kubeconfig'),
  };
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
const toml = (s: string) => JSON.stringify(s);

/**
 * containerd 1.6 (config version 2) with its own root, state and sockets; runc's state under
 * the cluster's directory; pod network namespaces mounted under its state; the CNI bridge.
 * `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE, and the pause container's −998
 * fails in runc without it.
 */
export function containerdToml(
  l: Layout,
  opts: { sandboxImage: string; runc: string; cniBin: string },
): string {
  return `version = 2
root = ${toml(l.containerdRoot)}
state = ${toml(l.containerdState)}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = ${toml(l.containerdSocket)}

[ttrpc]
  address = ${toml(`${l.containerdSocket}.ttrpc`)}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${toml(`${l.root}/containerd/opt`)}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${toml(opts.sandboxImage)}
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = ${toml(opts.runc)}
        Root = ${toml(l.runcRoot)}
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${toml(opts.cniBin)}
    conf_dir = ${toml(l.cniConfDir)}
    max_conf_num = 1
`;
}

/** The bridge CNI: one bridge, host-local addresses from POD_SUBNET (leases kept under the cluster's directory), hostPort. */
export function cniConflist(l: Layout): string {
  return json({
    cniVersion: '1.0.0',
    name: 'herald',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: POD_SUBNET }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: l.cniDataDir,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  });
}

/**
 * kubelet: cgroup v1 allowed (failCgroupV1) with the cgroupfs driver (containerd 1.6 has no
 * RuntimeConfig RPC), pods' cgroups under `cgroupRoot`, pod logs under the cluster's directory,
 * DNS naming only the cluster DNS, image garbage collection off (images are imported, never
 * pulled). `protectKernelDefaults: false` lets it set vm.overcommit_memory and the panic
 * settings, which the harness restores.
 */
export function kubeletConfig(
  l: Layout,
  opts: { caFile: string; certFile: string; keyFile: string; cgroupRoot: string },
): string {
  return json({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: opts.cgroupRoot,
    containerRuntimeEndpoint: `unix://${l.containerdSocket}`,
    imageServiceEndpoint: `unix://${l.containerdSocket}`,
    address: NODE_IP,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: KUBELET_HEALTHZ_PORT,
    tlsCertFile: opts.certFile,
    tlsPrivateKeyFile: opts.keyFile,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: opts.caFile },
    },
    authorization: { mode: 'Webhook' },
    clusterDomain: CLUSTER_DOMAIN,
    clusterDNS: [DNS_SERVICE_IP],
    resolvConf: l.resolvConf,
    podLogsDir: l.podLogs,
    protectKernelDefaults: false,
    failSwapOn: false,
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    registerNode: true,
    shutdownGracePeriod: '0s',
    shutdownGracePeriodCriticalPods: '0s',
    maxPods: 110,
    fileCheckFrequency: '20s',
    nodeStatusReportFrequency: '10s',
  });
}

/**
 * kube-proxy in iptables mode (its rules are the namespace's, gone with it). Conntrack settings 0:
 * leave the kernel's (nf_conntrack_max is global, not the namespace's).
 */
export function proxyConfig(kubeconfigPath: string): string {
  return json({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: kubeconfigPath },
    mode: 'iptables',
    clusterCIDR: CLUSTER_CIDR,
    hostnameOverride: NODE_NAME,
    bindAddress: NODE_IP,
    healthzBindAddress: `127.0.0.1:${PROXY_HEALTHZ_PORT}`,
    metricsBindAddress: '127.0.0.1:10249',
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
  });
}

/** CoreDNS on the node address (kube-dns's EndpointSlice points there): cluster names only, nothing forwarded. */
export function corefile(kubeconfigPath: string): string {
  return `.:53 {
  bind ${NODE_IP}
  errors
  ready 127.0.0.1:${DNS_READY_PORT}
  kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
    kubeconfig ${kubeconfigPath} herald
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
  }
  cache 30
}
`;
}

/**
 * Objects the cluster needs beyond what the API server bootstraps: CoreDNS's read access, and
 * kube-dns as a Service without selector whose EndpointSlice names the node address, where
 * CoreDNS runs as a process of the namespace.
 */
export function bootstrapObjects(): { path: string; body: unknown }[] {
  return [
    {
      path: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'herald:coredns' },
        rules: [
          {
            apiGroups: [''],
            resources: ['endpoints', 'services', 'pods', 'namespaces'],
            verbs: ['list', 'watch'],
          },
          { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
        ],
      },
    },
    {
      path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'herald:coredns' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'herald:coredns' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'herald:coredns' }],
      },
    },
    {
      path: '/api/v1/namespaces/kube-system/services',
      body: {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' } },
        spec: {
          clusterIP: DNS_SERVICE_IP,
          ports: [
            { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
            { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
          ],
        },
      },
    },
    {
      path: '/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices',
      body: {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: 'kube-dns-node',
          namespace: 'kube-system',
          labels: {
            'kubernetes.io/service-name': 'kube-dns',
            'endpointslice.kubernetes.io/managed-by': 'herald-testkit',
          },
        },
        addressType: 'IPv4',
        endpoints: [{ addresses: [NODE_IP], conditions: { ready: true }, nodeName: NODE_NAME }],
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
        ],
      },
    },
  ];
}

/**
 * Traefik as the Gateway API data plane, outside the cluster's pods (it reads KUBECONFIG): one
 * entry point for Gateway listeners on the node address, its ping on loopback. Never checks for
 * new versions (no network here); the experimental channel stays off with the standard CRDs.
 */
export function traefikArgs(): string[] {
  return [
    '--global.checkNewVersion=false',
    '--global.sendAnonymousUsage=false',
    `--entryPoints.web.address=${NODE_IP}:${GATEWAY_PORT}`,
    `--entryPoints.traefik.address=127.0.0.1:${TRAEFIK_PING_PORT}`,
    // On SIGTERM it waits this long for open connections (10 s by default): streams never end.
    '--entryPoints.web.transport.lifeCycle.graceTimeOut=1s',
    '--entryPoints.traefik.transport.lifeCycle.graceTimeOut=1s',
    '--ping=true',
    '--ping.entryPoint=traefik',
    '--providers.kubernetesGateway=true',
    `--providers.kubernetesGateway.statusAddress.ip=${NODE_IP}`,
    '--log.level=INFO',
    '--log.noColor=true',
  ];
}

/**
 * Traefik's read access (and status writes) for the Gateway API, the GatewayClass it serves and
 * one Gateway, listening on its entry point, that routes of any namespace may attach to.
 */
export function gatewayObjects(): { path: string; body: unknown }[] {
  const gatewayApi = 'gateway.networking.k8s.io';
  return [
    {
      path: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'herald:traefik' },
        rules: [
          {
            apiGroups: [''],
            resources: ['namespaces', 'secrets', 'configmaps', 'services'],
            verbs: ['get', 'list', 'watch'],
          },
          { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
          {
            apiGroups: [gatewayApi],
            resources: [
              'gatewayclasses',
              'gateways',
              'httproutes',
              'grpcroutes',
              'referencegrants',
              'backendtlspolicies',
              'tcproutes',
              'tlsroutes',
            ],
            verbs: ['get', 'list', 'watch'],
          },
          {
            apiGroups: [gatewayApi],
            resources: [
              'gatewayclasses/status',
              'gateways/status',
              'httproutes/status',
              'grpcroutes/status',
              'backendtlspolicies/status',
              'tcproutes/status',
              'tlsroutes/status',
            ],
            verbs: ['update', 'patch'],
          },
        ],
      },
    },
    {
      path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'herald:traefik' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'herald:traefik' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'herald:traefik' }],
      },
    },
    {
      path: `/apis/${gatewayApi}/v1/gatewayclasses`,
      body: {
        apiVersion: `${gatewayApi}/v1`,
        kind: 'GatewayClass',
        metadata: { name: GATEWAY_CLASS },
        spec: { controllerName: 'traefik.io/gateway-controller' },
      },
    },
    {
      path: `/apis/${gatewayApi}/v1/namespaces/${GATEWAY.namespace}/gateways`,
      body: {
        apiVersion: `${gatewayApi}/v1`,
        kind: 'Gateway',
        metadata: { name: GATEWAY.name, namespace: GATEWAY.namespace },
        spec: {
          gatewayClassName: GATEWAY_CLASS,
          listeners: [
            {
              name: GATEWAY.listener,
              protocol: 'HTTP',
              port: GATEWAY_PORT,
              allowedRoutes: { namespaces: { from: 'All' } },
            },
          ],
        },
      },
    },
  ];
}

/**
 * Debian's Prometheus inside the namespace, scraping the targets the harness discovers through the
 * API server and writes to `targetsFile` (cluster-targets.ts: Debian's build has no Kubernetes
 * discovery of its own).
 */
export function prometheusConfig(targetsFile: string, intervalMs: number): string {
  const interval = `${intervalMs}ms`;
  return json({
    global: { scrape_interval: interval, evaluation_interval: interval },
    scrape_configs: [
      {
        job_name: 'service-endpoints',
        file_sd_configs: [{ files: [targetsFile], refresh_interval: '1s' }],
      },
    ],
  });
}
