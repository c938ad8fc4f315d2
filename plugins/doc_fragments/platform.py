# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The option groups of plugins/module_utils/platform/options.py, one section per dict."""

    # ROLLOUT_OPTIONS: the operation (state file, timeouts, batching, measurement) and the backend choice
    DOCUMENTATION = r"""
options:
  platform:
    description:
      - The backend that runs the instances and routes their traffic.
      - C(hosts) (default), instances with release directories and a restart command (O(targets)) on the machine
        running the module, whose traffic goes through HAProxy (O(haproxy_socket)).
      - C(ssh), the same instances on their own hosts; every release operation (copy the artifact, check its
        sha256, install, verify, prune, switch C(current), restart, wait ready) runs on the target's host over the
        system C(ssh)/C(scp) with the target's O(targets[].ssh_host) and other C(ssh_*) facts, while traffic stays
        with HAProxy on the machine running the module (the balancer). See the C(meshos.release.platform.ssh)
        options.
      - C(kubernetes) is one app's Deployments in O(namespace). C(rolling) sets the image of O(deployment) and its
        controller rolls; C(blue-green) runs C(<deployment>-blue) and C(<deployment>-green) behind O(service) and
        switches the Service's selector; C(canary) runs C(<deployment>-canary) beside O(deployment) (traffic by
        replica ratio, or exact weights through O(canary_router)). Rollback goes back a revision, switches the
        color back, or aborts the canary, whichever runs. See the C(meshos.release.platform.kubernetes) options.
    type: str
    choices: [hosts, kubernetes, ssh]
    default: hosts
  environment:
    description:
      - Environment name, for example C(production). Selects the state file C(<state_dir>/<environment>.json).
    type: str
    required: true
  state_dir:
    description:
      - Directory of the per-environment JSON state files (written atomically; a re-run resumes from them).
    type: path
    required: true
  state_backend:
    description:
      - Where the operation in progress and its history are kept. V(file) is O(state_dir). V(kubernetes) is the
        C(operation) key of ConfigMap C(meshos-state-<environment>) in O(namespace) of the cluster O(kubeconfig) /
        O(context) / O(in_cluster) reach (the same object as C(meshos.release.release_state)'s cluster state);
        O(state_dir) is then not used. Needs the Python library C(kubernetes).
    type: str
    choices: [file, kubernetes]
    default: file
  drain_timeout:
    description: Seconds to wait for a drained server's sessions to end before failing.
    type: float
    default: 30.0
  ready_timeout:
    description: Seconds to wait for readiness (C(ready_url) 200, then HAProxy reporting the server UP).
    type: float
    default: 30.0
  interval:
    description: Polling interval in seconds.
    type: float
    default: 0.2
  batch_size:
    description: Hosts per rolling batch, a count (C(2)) or a percentage (C(25%)).
    type: str
    default: "1"
  forks:
    description:
      - Hosts changed at once inside one rolling batch, one blue-green idle color or one batch of a canary's
        promotion (install, drain, activate, enable, wait UP), like Ansible's C(forks). A batch never starts before
        the previous one is done; when one host of a batch fails, the others of the batch finish their step, then
        every host the operation changed is restored. V(1) (the default) changes one host after another; V(5) is
        Ansible's default forks. A rolling batch that holds the whole fleet still keeps one server in traffic (at most
        all but one at once). Set it for an environment with C(release_platform_options) in the inventory (or
        C(-e platform_options='{"forks":5}')).
    type: int
    default: 1
  default_weight:
    description: HAProxy weight restored after a canary on servers whose weight was not recorded at its start.
    type: int
    default: 100
  measure_interval:
    description:
      - Seconds between two C(show stat) samples while the operation runs. A live backend with no ready server
        between two samples counts as downtime for that interval (the resolution of the downtime in RV(traffic)).
    type: float
    default: 0.25
"""

    # HAPROXY_OPTIONS: the HAProxy runtime API
    HAPROXY = r"""
options:
  haproxy_socket:
    description:
      - HAProxy runtime API unix socket (C(stats socket ...)); changing servers, weights or the route map needs
        C(level admin).
    type: path
    required: true
"""

    # HOSTS_OPTIONS: the hosts backend (instances with release directories behind HAProxy backends)
    HOSTS = r"""
options:
  haproxy_socket:
    description:
      - HAProxy runtime API unix socket (C(stats socket ...)); changing servers, weights or the route map needs
        C(level admin). Required with O(platform=hosts) and O(platform=ssh).
    type: path
  backend:
    description:
      - HAProxy backend of targets that have no O(targets[].color) and no O(targets[].backend).
    type: str
    default: be_app
  route_map:
    description:
      - HAProxy map file whose key C(active) names the backend the frontend routes to (C(be_app), C(be_blue),
        C(be_green)). Required for blue-green.
    type: path
  targets:
    description:
      - The fleet. With O(platform=hosts), paths, commands and URLs are used on the machine running the module (the
        HAProxy host, or shared storage). With O(platform=ssh), they are used on each target's own host, reached
        with the target's C(ssh_*) fields. Required with O(platform=hosts) and O(platform=ssh).
    type: list
    elements: dict
    suboptions:
      name:
        description: Instance name (letters, digits, C(_), C(.), C(-)).
        type: str
        required: true
      server:
        description: HAProxy server name; defaults to O(targets[].name).
        type: str
      backend:
        description: HAProxy backend; defaults to C(be_<color>) for colored targets, else O(backend).
        type: str
      color:
        description: C(blue) or C(green) for blue-green.
        type: str
        choices: [blue, green]
      release_root:
        description: Absolute directory holding C(releases/<version>/) and the C(current) symlink.
        type: str
        required: true
      restart_command:
        description:
          - Command (no shell) restarting the instance on the new C(current); placeholders C({name}), C({host}),
            C({version}), C({port}), C({release_root}).
        type: str
        required: true
      ready_url:
        description: URL answering 200 when the instance is ready.
        type: str
        required: true
      status_url:
        description: Optional URL returning JSON with C(version), used to detect an instance still running an old version.
        type: str
      weight:
        description: Unused per-target weight hint (1-256); O(default_weight) is what is restored.
        type: int
      host:
        description: Value for the C({host}) placeholder.
        type: str
      port:
        description: Value for the C({port}) placeholder.
        type: int
      ssh_host:
        description:
          - O(platform=ssh) only (elsewhere an error). Address or name of the target's host, the inventory's
            C(ansible_host); defaults to O(targets[].host). With O(platform=ssh), O(targets[].release_root),
            O(targets[].restart_command) and O(targets[].ready_url) are paths, commands and URLs on that host.
        type: str
      ssh_port:
        description: O(platform=ssh) only. SSH port of the host (C(ansible_port)), default 22.
        type: int
      ssh_user:
        description: O(platform=ssh) only. Login name (C(ansible_user)); default is the ssh client's.
        type: str
      ssh_private_key_file:
        description: O(platform=ssh) only. Private key on the controller (C(ansible_ssh_private_key_file)).
        type: path
      ssh_known_hosts_file:
        description:
          - O(platform=ssh) only. known_hosts file holding the host's key; when set, host keys are checked strictly
            against it.
        type: path
      ssh_common_args:
        description:
          - O(platform=ssh) only. Extra ssh options, as in C(ansible_ssh_common_args) (for example
            C(-o UserKnownHostsFile=... -o StrictHostKeyChecking=yes)). C(BatchMode=yes) and the connect timeout
            come first and cannot be overridden.
        type: str
  haproxy_frontends:
    description:
      - HAProxy frontends whose C(req_tot) and C(hrsp_5xx) counters measure the requests and failed requests in
        RV(traffic). Default is every HTTP frontend except those whose name starts with C(stats).
    type: list
    elements: str
  haproxy_sockets:
    description:
      - Every HAProxy balancer of the environment (an HA pair or more), each as its runtime API with C(level admin),
        a unix socket path on the machine running the module, or C(tcp://HOST:PORT) for a balancer whose runtime API
        listens on TCP (C(stats socket ipv4@ADDRESS:PORT level admin); reachable only from the release network).
        O(haproxy_socket) is always one of them (the first); duplicates are ignored.
      - Every traffic step (drain, enable, disable, weight, blue-green switch) is applied to all balancers in this
        order. A step that fails on one balancer is undone on every balancer it reached before the module fails
        naming that balancer, so the balancers never disagree about which servers take traffic. The states and
        route map are read from O(haproxy_socket); RV(traffic) sums the counters of all balancers.
      - All balancers use the same O(backend), server names and O(route_map) path.
    type: list
    elements: str
"""

    # KUBERNETES_OPTIONS: the kubernetes backend (one app's Deployments, its Service and routers)
    KUBERNETES = r"""
options:
  kubeconfig:
    description:
      - Kubeconfig file for O(platform=kubernetes). Default is the client's own lookup (C(KUBECONFIG), then
        C(~/.kube/config)). Ignored with O(in_cluster).
    type: path
  context:
    description: Kubeconfig context to use; default is the current context.
    type: str
  in_cluster:
    description: Use the pod's service account (the module runs inside the cluster) instead of a kubeconfig.
    type: bool
    default: false
  namespace:
    description: Namespace of O(deployment).
    type: str
    default: default
  deployment:
    description:
      - Name of the Deployment that is the fleet. Required with O(platform=kubernetes). The Python library
        C(kubernetes) must be installed where the module runs.
    type: str
  container:
    description: The container of the pod template that carries the release; needed only when there are several.
    type: str
  image:
    description:
      - Image reference for a version, with a C({version}) placeholder, for example
        C(registry.example.com/meshapp:{version}). Default is the container's current image repository with the
        version as tag.
    type: str
  pod_labels:
    description:
      - Extra labels set on the pod template together with the version (the label and annotation
        C(meshos.release/version) are always set). A rollback restores the old template, labels included.
    type: dict
  rollout_timeout:
    description:
      - Seconds to wait for the Deployment controller to report the rollout complete. The Deployment's own
        C(progressDeadlineSeconds) usually ends a stuck rollout earlier (C(ProgressDeadlineExceeded)); either is
        reported as STUCK with the conditions and the new ReplicaSet's pod states.
    type: float
    default: 600.0
  service:
    description:
      - The app's Service (default O(deployment)). Blue-green switches its selector's C(meshos.release/color)
        label between C(blue) and C(green); the Service must select C(<deployment>-blue) or C(<deployment>-green)
        once before the first blue-green deploy (the other color is created from the live one's spec). The
        canary routers weigh it (stable) against C(<service>-canary), which is created to select the canary pods.
      - A rollback reads which strategy runs from the cluster, in this order, a canary Deployment in progress
        (abort), this Service selecting a color (switch back), else the Deployment's previous revision.
    type: str
  preview_service:
    description:
      - Blue-green. The Service that selects the idle color before the switch (default C(<service>-preview),
        created with the ports of O(service)). The idle color is switched to only when every replica is a ready
        endpoint of it within O(ready_timeout); otherwise it is scaled to 0 and traffic stays where it was.
    type: str
  scale_down_delay:
    description:
      - Blue-green. Seconds the old color keeps its pods after a switch, for an instant switch back. C(0) scales it
        to 0 right after the switch; a negative value keeps it. The scale-down is made by the next blue-green deploy
        or rollback on the same app once the delay has passed (it is recorded on the Deployment as the annotation
        C(meshos.release/scale-down-at)).
    type: float
    default: 30.0
  canary_router:
    description:
      - Canary. How traffic is split between the stable O(deployment) and C(<deployment>-canary).
      - C(replicas), by replica ratio behind one Service, of the stable Deployment's N replicas ceil(N * percent /
        100) run the canary and the rest stay stable (at least one each below 100); the result reports the measured
        share of ready pods (C(measured_share)).
      - C(gateway), a Gateway API C(HTTPRoute) (O(canary_httproute)) whose first rule's C(backendRefs) become the
        stable and canary Services weighted C(100 - percent) and C(percent), read back after writing.
      - C(nginx), an NGINX canary Ingress C(<canary_ingress>-canary) (the rules of O(canary_ingress) pointed at the
        canary Service) with the annotations C(nginx.ingress.kubernetes.io/canary) and C(canary-weight), read
        back after writing. With C(gateway) and C(nginx) the stable Deployment keeps its replicas; the stable
        Service must select the stable pods only (label them C(meshos.release/track=stable)).
    type: str
    choices: [replicas, gateway, nginx]
    default: replicas
  canary_httproute:
    description: Canary with O(canary_router=gateway). Name of the HTTPRoute (in O(namespace)) to weigh.
    type: str
  canary_ingress:
    description: Canary with O(canary_router=nginx). Name of the app's Ingress (in O(namespace)).
    type: str
"""

    # SSH_OPTIONS: the ssh backend (per-host work over the system ssh/scp)
    SSH = r"""
options:
  ssh_connect_timeout:
    description:
      - O(platform=ssh). Seconds ssh waits for a host's connection (C(ConnectTimeout)); an unreachable host fails
        the step naming the target, its ssh destination and the operation.
    type: float
    default: 5.0
  ssh_command_timeout:
    description:
      - O(platform=ssh). Seconds one remote operation (an artifact copy, C(restart_command)) may take before ssh is
        killed and the host counts as unreachable. Readiness waits use O(ready_timeout) plus the connect timeout.
    type: float
    default: 120.0
  ssh_remote_python:
    description:
      - O(platform=ssh). Python 3.9+ on the hosts that runs the release operations (sent on stdin, nothing is
        installed on the host).
    type: str
    default: python3
  ssh_control_persist:
    description:
      - O(platform=ssh). Seconds a shared ssh connection per host (C(ControlMaster)) stays open after its last use;
        C(0) opens one connection per operation.
    type: float
    default: 30.0
"""
