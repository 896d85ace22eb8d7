#!/bin/sh
# Runs inside the debootstrapped root file system (chroot) to turn it into a host image:
# systemd as PID 1, sshd with per-container host keys, root login by key only, and a
# boot-time unit that installs the SSH public key handed over in the container's
# environment (CARINA_AUTHORIZED_KEY), the way cloud-init installs a Nova keypair.
set -eu

# Units that have nothing to do in a container.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-udev-trigger.service systemd-modules-load.service \
            sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
            systemd-remount-fs.service systemd-firstboot.service apt-daily.timer \
            apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done

# sshd: keys only, no DNS lookups, host keys made at first boot (never shared by hosts).
mkdir -p /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/carina.conf <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
CONF
rm -f /etc/ssh/ssh_host_*

cat > /usr/local/sbin/carina-host-init <<'INIT'
#!/bin/sh
# First-boot set-up of a carina host container.
set -eu
ssh-keygen -A
key=$(tr '\0' '\n' < /proc/1/environ | sed -n 's/^CARINA_AUTHORIZED_KEY=//p')
if [ -n "$key" ]; then
  install -d -m 0700 /root/.ssh
  printf '%s\n' "$key" > /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
fi
INIT
chmod 0755 /usr/local/sbin/carina-host-init

cat > /etc/systemd/system/carina-host-init.service <<'UNIT'
[Unit]
Description=carina host first-boot set-up (host keys, authorized key)
Before=ssh.service
ConditionPathExists=/proc/1/environ

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/carina-host-init
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/carina-host-init.service \
  /etc/systemd/system/multi-user.target.wants/carina-host-init.service

# A machine-id per container, made by systemd at boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/* /var/tmp/*
