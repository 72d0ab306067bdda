// etcd for the local control plane: the server's own entry point, built from
// go.etcd.io/etcd/server/v3 (the etcd binary's main package lives in a module
// whose go.mod has replace directives, so it cannot be built by path).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
