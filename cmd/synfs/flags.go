package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/synfs/synfs/cmd/internal/bytesize"
)

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, as mount helpers pass them (SYN_ID MOUNTPOINT -o ...).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// optionList collects -o values; apply sets the flag of each name.
type optionList []string

func (o *optionList) String() string { return strings.Join(*o, ",") }

func (o *optionList) Set(v string) error {
	*o = append(*o, strings.Split(v, ",")...)
	return nil
}

// Options a mount helper passes that mean nothing to synfs, or that the
// kernel handles on its own.
var ignoredOptions = map[string]bool{
	"rw": true, "dev": true, "nodev": true, "suid": true, "nosuid": true, "exec": true, "noexec": true,
	"auto": true, "noauto": true, "user": true, "nouser": true, "users": true, "_netdev": true, "nofail": true,
	"defaults": true, "atime": true, "noatime": true, "relatime": true,
}

// Short names FUSE users know, for the flags they mean.
var optionAliases = map[string]string{"ro": "read-only", "allow_other": "allow-other"}

func (o optionList) apply(fs *flag.FlagSet) error {
	for _, opt := range o {
		opt = strings.TrimSpace(opt)
		if opt == "" || ignoredOptions[opt] {
			continue
		}
		name, value, hasValue := strings.Cut(opt, "=")
		if alias, ok := optionAliases[name]; ok {
			name = alias
		}
		name = strings.ReplaceAll(name, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == "o" {
			return fmt.Errorf("unknown mount option %q", opt)
		}
		if !hasValue {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
				return fmt.Errorf("mount option %q needs a value (%s=...)", name, name)
			}
			value = "true"
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("mount option %q: %v", opt, err)
		}
	}
	return nil
}

// octalFlag is a permission mode written in octal (0444).
type octalFlag uint32

func (m *octalFlag) String() string {
	if *m == 0 {
		return ""
	}
	return fmt.Sprintf("%#o", uint32(*m))
}

func (m *octalFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o7777 {
		return fmt.Errorf("want an octal mode such as 0444, got %q", v)
	}
	*m = octalFlag(n)
	return nil
}

// sizeFlag is a byte count with an optional K, M, G or T suffix (powers of 1024).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := bytesize.Parse(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}
