// etcd for the local control plane, at the version k8s.io/kubernetes requires (Debian's
// etcd-server is older than what Kubernetes 1.34 is tested with).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
