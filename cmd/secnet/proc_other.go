//go:build !linux

package main

// kernelThread reports whether pid is a kernel thread; other systems
// have none that a check could be mistaken about.
func kernelThread(pid int) bool { return false }
