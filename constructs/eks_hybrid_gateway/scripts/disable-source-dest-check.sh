#!/bin/bash
# Boot script of the EKS Hybrid Nodes gateway nodes (managed node group launch template).
#
# The gateway forwards packets for addresses other than its own, so the node needs IP forwarding
# and the source/destination check turned off on its primary network interface (the interface
# the VPC routes for the remote pod networks point at). This is what the AWS getting-started
# page of the gateway does: `aws ec2 modify-network-interface-attribute --no-source-dest-check`
# on the primary ENI. The node role may do that only on network interfaces in the cluster VPC
# and instances carrying the gateway node tags the launch template puts on them.
#
# IAM changes and instance-profile credentials can take minutes to reach a fresh instance, so
# the call is retried with a capped backoff until a deadline. Every attempt is logged (cloud-init
# output and the journal, tag `hybrid-gateway`); on failure the script exits non-zero, so a node
# that would drop forwarded packets is never silent.
#
# Tunables (environment, for tests): HYBRID_GATEWAY_DEADLINE_S (default 900),
# HYBRID_GATEWAY_MAX_BACKOFF_S (default 30), HYBRID_GATEWAY_IMDS (default http://169.254.169.254).
set -uo pipefail

DEADLINE_S="${HYBRID_GATEWAY_DEADLINE_S:-900}"
MAX_BACKOFF_S="${HYBRID_GATEWAY_MAX_BACKOFF_S:-30}"
IMDS="${HYBRID_GATEWAY_IMDS:-http://169.254.169.254}"

log() {
  echo "hybrid-gateway: $*" >&2
  if command -v logger >/dev/null 2>&1; then logger -t hybrid-gateway -- "$*" || true; fi
}

imds() {
  # IMDSv2 only: the launch template requires tokens.
  local token
  token=$(curl -sS -f -X PUT "$IMDS/latest/api/token" \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 300") || return 1
  curl -sS -f -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/$1"
}

if ! sysctl -w net.ipv4.ip_forward=1 >/dev/null; then
  log "could not enable net.ipv4.ip_forward"
  exit 1
fi

started=$SECONDS
backoff=1
attempt=0
while :; do
  attempt=$((attempt + 1))
  region=$(imds placement/region) && mac=$(imds mac) \
    && eni=$(imds "network/interfaces/macs/$mac/interface-id")
  if [ -n "${eni:-}" ] && [ -n "${region:-}" ]; then
    if output=$(aws ec2 modify-network-interface-attribute --region "$region" \
        --network-interface-id "$eni" --no-source-dest-check 2>&1); then
      log "source/destination check disabled on $eni (attempt $attempt)"
      exit 0
    fi
    log "attempt $attempt: modify-network-interface-attribute on $eni failed: $output"
  else
    log "attempt $attempt: instance metadata (region, primary interface) not available yet"
  fi
  elapsed=$((SECONDS - started))
  if [ "$elapsed" -ge "$DEADLINE_S" ]; then
    log "giving up after $attempt attempts in ${elapsed}s: the source/destination check is" \
      "still on, forwarded packets will be dropped"
    exit 1
  fi
  sleep "$backoff"
  backoff=$((backoff * 2))
  if [ "$backoff" -gt "$MAX_BACKOFF_S" ]; then backoff=$MAX_BACKOFF_S; fi
done
