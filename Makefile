# meshos.release developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
VERSION ?= 5.1.0
# rolling or canary on the lab (blue-green needs colored hosts, see README)
STRATEGY ?= rolling
APPROVALS ?= playbooks/vars/lab_approvals.yml
ENV_SH := . scripts/env.sh

.PHONY: bootstrap test sanity units lint integration molecule k8s build release lab-up lab-down status clean

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

# The main job against the lab: bring the lab up, then run the release pipeline for VERSION.
release: lab-up
	@$(ENV_SH) && ansible-playbook playbooks/release.yml -e version=$(VERSION) -e release_strategy=$(STRATEGY) -e approvals_file=$(abspath $(APPROVALS))

clean: lab-down
	rm -rf .build tests/output
