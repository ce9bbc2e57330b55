//go:build rdma && cgo

package rdma

import (
	"github.com/strand-ml/strand/transport/rdma/ibverbs"
	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// hardwareProvider is libibverbs in binaries built with `-tags rdma`.
func hardwareProvider() verbs.Provider { return ibverbs.New() }
