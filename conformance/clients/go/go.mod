module sidecar-conformance/clients/go

go 1.19
