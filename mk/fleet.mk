# The local fleet (infra/local): HAProxy stands in for the ALB. Debian's package, installed
# only when missing (CI runs as root on a fresh machine).
.PHONY: haproxy fleet-test

haproxy: ## install HAProxy (the local load balancer) if missing
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || { \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy; }

TEST_PREREQS += haproxy

fleet-test: install haproxy ## run the local fleet's tests (unit and end to end)
	$(BIN)/pytest tests/local
