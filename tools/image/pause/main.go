// Command pause is the sandbox container of Herald's test cluster (containerd's sandbox_image):
// it holds a pod's namespaces open, reaps the zombies that land on it as PID 1 of a shared PID
// namespace, and exits 0 on SIGINT or SIGTERM, as Kubernetes' pause.c does. Only the standard
// library, built with CGO_ENABLED=0, so the image is this one static file.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Printed by -v; tools/image/images.ts sets it (-X main.version) to the image's tag.
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause", version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1, so orphans are not reaped here")
	}
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "pause: shutting down on %v\n", s)
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has exited: SIGCHLDs arriving together are delivered once.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
