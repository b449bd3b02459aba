// Command synfs mounts a Synapse folder with an STS storage location as a
// plain directory, and runs the Synapse emulator the tests and demo use.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: synfs <command> [flags]

commands:
  mount        mount a Synapse STS folder: synfs mount [flags] SYN_ID MOUNTPOINT
  recover      upload what a killed or failed mount left in the spool: synfs recover [flags] SYN_ID
  demo         mount a generated sample folder served by the built-in emulator
  dev-server   run the Synapse + S3 emulator until interrupted
  version      print the version

Run 'synfs <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "mount":
		return mountCmd(ctx, args[1:], stderr)
	case "recover":
		return recoverCmd(ctx, args[1:], stdout, stderr)
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	case "dev-server":
		return devServer(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "synfs", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "synfs: unknown command %q\n%s", args[0], usage)
		return 2
	}
}
