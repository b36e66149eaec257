# Java client (clients/java): Maven resolves every dependency and plugin into ~/.m2 once
# (setup-java, redone when pom.xml changes), then lint and tests build offline (-o).
# protobuf-maven-plugin generates the stubs at build time with protoc and
# protoc-gen-grpc-java from Maven Central; nothing generated is checked in. The tests start
# their own broker (JOBWIRE_PYTHON).
JAVA_CLIENT_DIR := clients/java
JAVA_SETUP_STAMP := $(JAVA_CLIENT_DIR)/target/.resolved
MVN := mvn -B -q
CLIENT_SETUP += setup-java
CLIENT_LINT += lint-java
CLIENT_TEST += test-java

.PHONY: setup-java lint-java test-java

# go-offline misses what plugins load while they run (surefire's JUnit provider and
# launcher), so a first build that runs the broker-free unit tests fetches the rest.
$(JAVA_SETUP_STAMP): $(JAVA_CLIENT_DIR)/pom.xml
	cd $(JAVA_CLIENT_DIR) && $(MVN) dependency:go-offline && \
		$(MVN) clean test -Dtest=EnqueueOptionsTest
	touch $@

setup-java: $(JAVA_SETUP_STAMP)

# A clean build, so javac sees (and -Xlint:all rejects) every warning in every file.
lint-java: setup-java
	cd $(JAVA_CLIENT_DIR) && $(MVN) -o clean test-compile -Dmaven.compiler.failOnWarning=true
	touch $(JAVA_SETUP_STAMP)

test-java: setup setup-java
	rm -rf $(JAVA_CLIENT_DIR)/target/surefire-reports
	cd $(JAVA_CLIENT_DIR) && JOBWIRE_PYTHON="$${JOBWIRE_PYTHON:-$(CURDIR)/.venv/bin/python}" $(MVN) -o test
	@cat $(JAVA_CLIENT_DIR)/target/surefire-reports/TEST-*.xml | \
		sed -n 's/.*<testsuite [^>]* tests="\([0-9]*\)" errors="\([0-9]*\)" skipped="\([0-9]*\)" failures="\([0-9]*\)".*/\1 \2 \3 \4/p' | \
		awk '{t+=$$1; e+=$$2; s+=$$3; f+=$$4} END {printf "java: %d passed, %d failed, %d skipped\n", t-e-s-f, e+f, s}'
