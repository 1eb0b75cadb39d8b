module aosm-artifact-operator/tests/node/probe

go 1.25.0
