//go:build !linux

package testbroker

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
