#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_pki
short_description: Certificate authority, server and client certificates of a cluster
version_added: 0.1.0
description:
  - Builds and maintains the PKI of one cluster in a folder on the machine the module runs on
    (normally the Ansible controller, with C(delegate_to=localhost)) using the Python
    C(cryptography) package.
  - The folder holds a per-cluster CA (C(ca.pem), C(ca-key.pem)), one server certificate per node
    (C(server-<name>.pem), C(server-<name>-key.pem)) and client certificates
    (C(client-<name>.pem), C(client-<name>-key.pem)), by default one for C(admin).
  - Private keys are unencrypted PKCS#8 PEM files created with mode C(0600) from the start; certificates
    are C(0644). Every file is written atomically (a temporary file in the same folder, then a rename).
    Existing key files with another mode are set back to C(0600).
  - Every leaf (re)issue uses a new key. A leaf is reissued when its files are missing or unreadable,
    its key does not match its certificate, it is not signed by the current CA, its subject, SANs,
    usage, key type or key size differ from the request, or it is inside the renewal window.
  - The CA is reissued when its files are missing or unreadable, its key does not match, the key
    algorithm differs from O(key_type), or it is inside the renewal window. A new CA reissues every
    leaf. Changing O(cluster_name) or O(rsa_key_size) alone does not replace an existing CA.
  - A leaf never outlives its CA; its validity is cut at the CA's end of validity.
  - The whole input is validated before anything is written.
  - No private key is ever returned; return values only give file paths.
author:
  - rax.carina developers (@rax-carina)
requirements:
  - cryptography
attributes:
  check_mode:
    support: full
    description: Makes the same decisions and returns the same values (what would be issued or
      removed), and writes nothing, not even the folder.
  diff_mode:
    support: full
    description: Returns the subject, SANs and end of validity of every certificate before and after.
      Keys are never part of the diff.
  platform:
    support: full
    platforms: posix
    description: Runs where the PKI folder lives, normally the controller.
options:
  path:
    description:
      - Folder of the PKI. Created with mode C(0700) when missing.
    type: path
    required: true
  cluster_name:
    description:
      - Name of the cluster. The CA subject is C(CN=<cluster_name> CA, O=carina).
      - At most 61 characters.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the CA and the listed certificates.
      - V(absent) deletes the files the module manages in O(path) (C(ca.pem), C(ca-key.pem),
        C(server-*.pem), C(client-*.pem), C(keypair-*)) and then the folder when it is empty.
    type: str
    choices: [present, absent]
    default: present
  key_type:
    description:
      - Key algorithm of the CA and of every leaf. V(ecdsa) uses the P-256 curve.
      - Changing it reissues the CA and every leaf.
    type: str
    choices: [ecdsa, rsa]
    default: ecdsa
  rsa_key_size:
    description:
      - Size of RSA keys, used when O(key_type=rsa).
      - Changing it reissues every leaf; an existing RSA CA is kept.
    type: int
    choices: [2048, 3072, 4096]
    default: 2048
  ca_valid_days:
    description:
      - Validity of a new CA certificate, in days.
    type: int
    default: 3650
  cert_valid_days:
    description:
      - Validity of a new server or client certificate, in days.
    type: int
    default: 825
  renew_before_days:
    description:
      - A certificate (the CA included) is reissued when it expires in fewer than this many days.
      - Must be smaller than O(cert_valid_days) and O(ca_valid_days).
    type: int
    default: 30
  servers:
    description:
      - Server certificates, for example one per node. Their extended key usage is serverAuth only, unless
        O(servers[].usage=peer).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - Stem of the file names C(server-<name>.pem) and C(server-<name>-key.pem).
          - Letters, digits, C(_), C(.) and C(-), starting with a letter or digit; unique among servers.
        type: str
        required: true
      common_name:
        description:
          - Subject CN of the certificate. Defaults to O(servers[].name).
        type: str
      sans:
        description:
          - Subject alternative names. An IPv4 or IPv6 address becomes an IP address SAN, anything
            else must be a DNS name (a wildcard C(*) is allowed only as the whole first label).
          - O(extra_sans) are added to these.
        type: list
        elements: str
        default: []
      usage:
        description:
          - V(server) gives the certificate serverAuth only, so that a server's key cannot act as a
            client of the cluster.
          - V(peer) adds clientAuth, for members that dial each other with the same certificate (etcd peers).
          - Changing it reissues the certificate.
        type: str
        choices: [server, peer]
        default: server
        version_added: 0.1.0
  clients:
    description:
      - Client certificates. Their extended key usage is clientAuth only; they carry no SANs.
    type: list
    elements: dict
    default: [{name: admin, common_name: admin}]
    suboptions:
      name:
        description:
          - Stem of the file names C(client-<name>.pem) and C(client-<name>-key.pem).
          - Letters, digits, C(_), C(.) and C(-), starting with a letter or digit; unique among clients.
        type: str
        required: true
      common_name:
        description:
          - Subject CN of the certificate. Defaults to O(clients[].name).
        type: str
      organization:
        description:
          - Subject O values, for example V(system:masters) for a Kubernetes administrator.
        type: list
        elements: str
        default: []
  keypairs:
    description:
      - Key pairs with no certificate, for example the key that signs Kubernetes service-account
        tokens. Each is C(keypair-<name>-key.pem) (mode C(0600)) and C(keypair-<name>.pub) (the public key,
        PEM SubjectPublicKeyInfo).
      - A key pair is kept while its key is readable and of O(key_type); it is not renewed, since a new
        key invalidates everything the old one signed. A missing or stale public key file is rewritten.
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
    suboptions:
      name:
        description:
          - Stem of the file names. Letters, digits, C(_), C(.) and C(-), starting with a letter or digit.
        type: str
        required: true
  extra_sans:
    description:
      - SANs added to every server certificate, for example the address of a load balancer.
    type: list
    elements: str
    default: []
  prune:
    description:
      - Remove C(server-*.pem), C(client-*.pem) and C(keypair-*) files in O(path) that belong to no entry
        of O(servers), O(clients) or O(keypairs), for example after a node was removed.
    type: bool
    default: false
  ca_import:
    description:
      - A CA made elsewhere to use as the cluster CA instead of one made here, for example the CA that
        OpenStack Magnum keeps for a cluster (so that the client certificates Magnum signs are trusted).
      - The certificate must be a CA (basicConstraints CA:TRUE), unexpired, and the key must be its
        own, unencrypted. Its key type may differ from O(key_type), which then applies to the leaves only.
      - When the folder's CA differs from it, it replaces that CA and every leaf is reissued.
      - An imported CA is marked (C(ca.imported)) and never reissued by this module, not even in the
        renewal window. Later runs without O(ca_import) keep it, and fail if its files are lost.
      - Applies to the CA of O(path) only, not to O(authorities).
    type: dict
    version_added: 0.1.0
    suboptions:
      cert:
        description: Path of the CA certificate (PEM).
        type: path
        required: true
      key:
        description: Path of the CA's private key (unencrypted PEM); it is copied with mode C(0600).
        type: path
        required: true
  authorities:
    description:
      - More CAs of the same cluster, each in its own folder with its own certificates, handled in the
        same run with the same O(state), key and validity settings and O(prune) (Kubernetes keeps etcd
        and the front proxy apart from the cluster CA).
      - The input of every CA is validated before anything is written for any of them.
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
    suboptions:
      path:
        description: Folder of this CA's PKI.
        type: path
        required: true
      cluster_name:
        description: Name in this CA's subject (C(CN=<cluster_name> CA, O=carina)).
        type: str
        required: true
      servers:
        description: Server certificates of this CA, as in O(servers).
        type: list
        elements: dict
        default: []
      clients:
        description: Client certificates of this CA, as in O(clients) (none by default).
        type: list
        elements: dict
        default: []
      keypairs:
        description: Key pairs kept with this CA, as in O(keypairs).
        type: list
        elements: dict
        default: []
notes:
  - Run it on the controller (C(delegate_to=localhost), C(run_once=true)) so that the CA key never
    leaves it; copy only the certificates and the keys each node needs.
seealso:
  - name: Protect the Docker daemon socket
    description: How Docker uses a CA, server and client certificates for TLS.
    link: https://docs.docker.com/engine/security/protect-access/
"""

EXAMPLES = r"""
- name: PKI of the cluster, with a server certificate per manager
  rax.carina.cluster_pki:
    path: "{{ playbook_dir }}/pki/demo"
    cluster_name: demo
    servers:
      - name: manager-1
        sans: [198.18.0.11, manager-1.demo.example.com]
      - name: manager-2
        sans: [198.18.0.12, manager-2.demo.example.com]
    extra_sans: [127.0.0.1, swarm.demo.example.com]
  delegate_to: localhost
  run_once: true
  register: pki

- name: Admin and Kubernetes administrator clients, RSA keys, drop certificates of removed nodes
  rax.carina.cluster_pki:
    path: "{{ playbook_dir }}/pki/demo"
    cluster_name: demo
    key_type: rsa
    rsa_key_size: 3072
    servers:
      - name: manager-1
        sans: [198.18.0.11]
    clients:
      - name: admin
      - name: kube-admin
        common_name: kubernetes-admin
        organization: [system:masters]
    prune: true
  delegate_to: localhost
  run_once: true

- name: Remove the PKI of a deleted cluster
  rax.carina.cluster_pki:
    path: "{{ playbook_dir }}/pki/demo"
    cluster_name: demo
    state: absent
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: Folder of the PKI.
  returned: always
  type: str
  sample: /home/me/pki/demo
ca:
  description: The CA certificate. V(null) when O(state=absent).
  returned: always
  type: dict
  contains:
    cert:
      description: Path of the CA certificate.
      type: str
      sample: /home/me/pki/demo/ca.pem
    not_after:
      description: End of validity, ISO 8601 in UTC.
      type: str
      sample: "2035-06-01T12:00:00Z"
    fingerprint_sha256:
      description:
        - SHA-256 fingerprint of the certificate, upper-case hex bytes separated by colons.
        - V(null) in check mode when the CA would be (re)issued.
      type: str
      sample: "3A:9F:...:01"
    issued:
      description: Whether the CA was (or, in check mode, would be) issued.
      type: bool
      sample: false
    reason:
      description:
        - Why the CA was (re)issued, for example V(missing) or V(renewal window), or V(imported) when O(ca_import)
          replaced it; V(null) if it was kept.
      type: str
      sample: missing
    imported:
      description: Whether the CA is one made elsewhere (O(ca_import), now or in an earlier run).
      type: bool
      sample: false
      version_added: 0.1.0
servers:
  description: Server certificates by name. Empty when O(state=absent).
  returned: always
  type: dict
  sample:
    manager-1:
      cert: /home/me/pki/demo/server-manager-1.pem
      key: /home/me/pki/demo/server-manager-1-key.pem
      sans: [198.18.0.11, 127.0.0.1, manager-1.demo.example.com]
      not_after: "2027-09-04T12:00:00Z"
      issued: true
      reason: sans changed
  contains:
    cert:
      description: Path of the certificate.
      type: str
    key:
      description: Path of the private key file (never its content).
      type: str
    sans:
      description: SANs of the certificate, normalized (DNS names in lower case) and sorted.
      type: list
      elements: str
    not_after:
      description: End of validity, ISO 8601 in UTC.
      type: str
    issued:
      description: Whether the certificate was (or, in check mode, would be) issued.
      type: bool
    reason:
      description:
        - Why it was (re)issued, V(null) if it was kept. One of V(missing), V(unparseable), V(new CA),
          V(key mismatch), V(not signed by current CA), V(key type changed), V(subject changed),
          V(sans changed), V(usage changed), V(renewal window).
      type: str
clients:
  description: Client certificates by name, shaped like RV(servers) without C(sans). Empty when O(state=absent).
  returned: always
  type: dict
  sample:
    admin:
      cert: /home/me/pki/demo/client-admin.pem
      key: /home/me/pki/demo/client-admin-key.pem
      not_after: "2027-09-04T12:00:00Z"
      issued: false
      reason: null
  contains:
    cert:
      description: Path of the certificate.
      type: str
    key:
      description: Path of the private key file (never its content).
      type: str
    not_after:
      description: End of validity, ISO 8601 in UTC.
      type: str
    issued:
      description: Whether the certificate was (or, in check mode, would be) issued.
      type: bool
    reason:
      description: Why it was (re)issued, V(null) if it was kept.
      type: str
keypairs:
  description: Key pairs by name. Empty when O(state=absent).
  returned: always
  type: dict
  version_added: 0.1.0
  sample:
    service-account:
      key: /home/me/pki/demo/keypair-service-account-key.pem
      public: /home/me/pki/demo/keypair-service-account.pub
      issued: true
      reason: missing
  contains:
    key:
      description: Path of the private key file (never its content).
      type: str
    public:
      description: Path of the public key file.
      type: str
    issued:
      description: Whether a new key was (or would be) made.
      type: bool
    reason:
      description:
        - V(missing), V(unparseable) or V(key type changed) when a new key is made, V(public key rewritten)
          when only the public key file is written again, V(null) when the pair is kept.
      type: str
issued:
  description:
    - What was (or would be) issued, C(ca) first, then servers, then clients, each sorted by name, then
      new key pairs (C(keypair:<name>)).
  returned: always
  type: list
  elements: str
  sample: [ca, "server:manager-1", "client:admin"]
removed:
  description:
    - Files removed (or that would be) by O(prune=true) or O(state=absent). With O(state=absent) the
      folder itself is listed last when it is removed.
  returned: always
  type: list
  elements: str
  sample: [/home/me/pki/demo/server-manager-3-key.pem, /home/me/pki/demo/server-manager-3.pem]
modes_fixed:
  description: Existing key files whose mode was (or would be) set back to C(0600).
  returned: always
  type: list
  elements: str
  sample: [/home/me/pki/demo/client-admin-key.pem]
authorities:
  description: The result of each CA of O(authorities), in their order, with the keys above.
  returned: always
  type: list
  elements: dict
  version_added: 0.1.0
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rax.carina.plugins.module_utils import pki


def argument_spec():
    return dict(
        path=dict(type='path', required=True),
        cluster_name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        key_type=dict(type='str', default='ecdsa', choices=['ecdsa', 'rsa']),
        rsa_key_size=dict(type='int', default=2048, choices=[2048, 3072, 4096]),
        ca_valid_days=dict(type='int', default=3650),
        cert_valid_days=dict(type='int', default=825),
        renew_before_days=dict(type='int', default=30),
        servers=dict(
            type='list', elements='dict', default=[],
            options=dict(
                name=dict(type='str', required=True),
                common_name=dict(type='str'),
                sans=dict(type='list', elements='str', default=[]),
                usage=dict(type='str', default='server', choices=['server', 'peer']),
            ),
        ),
        clients=dict(
            type='list', elements='dict', default=[{'name': 'admin', 'common_name': 'admin'}],
            options=dict(
                name=dict(type='str', required=True),
                common_name=dict(type='str'),
                organization=dict(type='list', elements='str', default=[]),
            ),
        ),
        keypairs=dict(
            type='list', elements='dict', default=[], no_log=False,
            options=dict(name=dict(type='str', required=True)),
        ),
        extra_sans=dict(type='list', elements='str', default=[]),
        prune=dict(type='bool', default=False),
        ca_import=dict(type='dict', options=dict(cert=dict(type='path', required=True),
                                                 key=dict(type='path', required=True, no_log=False))),
        authorities=dict(
            type='list', elements='dict', default=[],
            options=dict(
                path=dict(type='path', required=True),
                cluster_name=dict(type='str', required=True),
                servers=dict(type='list', elements='dict', default=[]),
                clients=dict(type='list', elements='dict', default=[]),
                keypairs=dict(type='list', elements='dict', default=[], no_log=False),
            ),
        ),
    )


def authority_params(params, authority):
    """The parameters of one more CA: its own folder, name and certificates, the rest shared."""
    own = dict(params, path=authority['path'], cluster_name=authority['cluster_name'], extra_sans=[])
    servers = [dict({'common_name': None, 'sans': [], 'usage': 'server'}, **server) for server in authority['servers']]
    clients = [dict({'common_name': None, 'organization': []}, **client) for client in authority['clients']]
    own.update(servers=servers, clients=clients, keypairs=authority['keypairs'])
    del own['authorities']
    own['ca_import'] = None
    return own


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not pki.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=pki.CRYPTOGRAPHY_IMPORT_ERROR)
    main_params = dict(module.params)
    del main_params['authorities']
    every = [main_params] + [authority_params(module.params, item) for item in module.params['authorities']]
    for index, params in enumerate(every):
        try:
            pki.validate_params(params)
        except pki.PKIValidationError as exc:
            module.fail_json(msg=('%s' if index == 0 else 'authorities[%d]: %%s' % (index - 1)) % exc, changed=False)
    results = []
    for params in every:
        try:
            results.append(pki.run(params, check_mode=module.check_mode, diff=module._diff))
        except pki.PKIValidationError as exc:
            module.fail_json(msg=str(exc), changed=any(r['changed'] for r in results))
        except OSError as exc:
            module.fail_json(msg='cannot update the PKI in %s: %s' % (params['path'], exc),
                             changed=any(r['changed'] for r in results))
    result = dict(results[0], authorities=results[1:])
    result['changed'] = any(r['changed'] for r in results)
    if module._diff and len(results) > 1:
        # One diff per CA (Ansible shows a list of diffs one after the other).
        result['diff'] = [r['diff'] for r in results if r.get('diff')]
    module.exit_json(**result)


if __name__ == '__main__':
    main()
