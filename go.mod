module github.com/secnet/secnet

go 1.26.0

require (
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/pelletier/go-toml/v2 v2.4.3
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.50.0
)
