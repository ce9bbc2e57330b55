//go:build !(rdma && cgo)

package rdma

import "github.com/strand-ml/strand/transport/rdma/verbs"

// hardwareProvider is nil in the default, cgo-free build: libibverbs is
// only bound when building with `-tags rdma` (and cgo enabled).
func hardwareProvider() verbs.Provider { return nil }
