// Command etcd is a thin wrapper around go.etcd.io/etcd/server/v3/etcdmain,
// equivalent to upstream etcd's main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
