// Command kube-controller-manager: the controllers (ServiceAccounts, Deployments, ...) of the local node cluster (scripts/cluster.sh up --node),
// built from the same k8s.io/kubernetes module as kube-apiserver (../../go.mod).
package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones without the host's zoneinfo

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
