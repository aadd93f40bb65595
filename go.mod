module github.com/secnet/secnet

go 1.26.0

require golang.org/x/sys v0.50.0

require github.com/pelletier/go-toml/v2 v2.4.3 // indirect
