// Package coordpb holds the generated gRPC and protobuf code of the
// coordinator service defined in coordinator.proto.
//
// Regenerate after editing coordinator.proto (needs protoc, and
// protoc-gen-go / protoc-gen-go-grpc on PATH):
//
//	apt-get install -y protobuf-compiler
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
//	go generate ./coordinator/proto
package coordpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative coordinator.proto
