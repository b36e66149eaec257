package testbroker

import "syscall"

// procAttr makes the broker die with the test process, even one killed outright.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
