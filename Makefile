# meshos.release developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
VERSION ?= 5.1.0
# rolling or canary on the lab (blue-green needs colored hosts, see README)
STRATEGY ?= rolling
APPROVALS ?= playbooks/vars/lab_approvals.yml
ENV_SH := . scripts/env.sh
# make release runs on the lab fleet (FLEET=1: SSH hosts in network namespaces, platform ssh); FLEET=0 or
# make release-local: the single-machine lab (instances as local processes)
FLEET ?= 1
FLEET_ROOT ?= /tmp/meshos-fleet
FLEET_INVENTORY := $(FLEET_ROOT)/lab-inventory.yml

.PHONY: bootstrap test sanity units lint integration molecule k8s build release release-local lab-up lab-down \
	fleet-lab-up fleet-lab-down status clean

bootstrap:
	@bash scripts/bootstrap.sh

test: bootstrap
	@bash scripts/test.sh

sanity units lint integration molecule k8s build: bootstrap
	@bash scripts/test.sh $@

lab-up: bootstrap
	@$(ENV_SH) && ansible-playbook playbooks/lab_up.yml

lab-down: bootstrap
	@$(ENV_SH) && ansible-playbook playbooks/lab_down.yml

# The lab as a fleet: app hosts as network namespaces with sshd (loopback sshds where namespaces are not allowed),
# HAProxy / Prometheus / Alertmanager on this machine (the balancer), inventory $(FLEET_INVENTORY).
fleet-lab-up: bootstrap
	@$(ENV_SH) && ansible-playbook playbooks/lab/fleet_lab_up.yml -e fleet_root=$(FLEET_ROOT) \
	  && ansible-playbook -i $(FLEET_INVENTORY) playbooks/lab_up.yml

# removes the whole FLEET_ROOT too (release areas, audit log, keys): the next make release starts fresh
fleet-lab-down: bootstrap
	@$(ENV_SH) && if [ -f $(FLEET_INVENTORY) ]; then ansible-playbook -i $(FLEET_INVENTORY) playbooks/lab_down.yml; fi \
	  && ansible-playbook playbooks/lab/fleet_down.yml -e fleet_root=$(FLEET_ROOT) \
	  && rm -rf $(FLEET_ROOT)

# The main job against the lab: bring the lab up, then run the release pipeline for VERSION (on the fleet unless
# FLEET=0).
ifeq ($(FLEET),0)
release: release-local
else
release: fleet-lab-up
	@$(ENV_SH) && ansible-playbook -i $(FLEET_INVENTORY) playbooks/release.yml -e version=$(VERSION) \
	  -e release_strategy=$(STRATEGY) -e approvals_file=$(abspath $(APPROVALS))
endif

release-local: lab-up
	@$(ENV_SH) && ansible-playbook playbooks/release.yml -e version=$(VERSION) -e release_strategy=$(STRATEGY) -e approvals_file=$(abspath $(APPROVALS))

clean: lab-down
	rm -rf .build tests/output
