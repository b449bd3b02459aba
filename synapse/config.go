// Package synapse is the Synapse (synapse.org) REST client used by synfs:
// models, endpoints, auth, retries, throttling and typed errors. It knows
// nothing of S3 or FUSE.
package synapse

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// DefaultRepoEndpoint serves entities, STS, storage locations and profiles.
	DefaultRepoEndpoint = "https://repo-prod.prod.sagebase.org/repo/v1"
	// DefaultFileEndpoint serves file handles and upload destinations.
	DefaultFileEndpoint = "https://repo-prod.prod.sagebase.org/file/v1"
	// Version goes into the default User-Agent so Synapse operators can tell
	// synfs traffic apart.
	Version = "0.1.0-dev"
)

// Defaults match the Synapse per-user throttle (3 concurrent, 600/min) so a
// well-behaved client never sees a 429 in normal operation.
const (
	defaultMaxConcurrent     = 3
	defaultRequestsPerMinute = 600
	defaultRetryBaseDelay    = time.Second
	defaultRetryMaxDelay     = 30 * time.Second
	defaultMaxRetries        = 8
)

// Config configures a Client. The zero value talks anonymously to production.
type Config struct {
	RepoEndpoint string // empty: DefaultRepoEndpoint
	FileEndpoint string // empty: DefaultFileEndpoint
	Token        string // personal access token; empty: anonymous. Never logged.

	// HTTPClient nil gets a client with dial/TLS/response-header timeouts but
	// no overall Timeout, which would cut long calls; bound calls with ctx.
	HTTPClient *http.Client
	UserAgent  string // empty: "synfs/"+Version

	// MaxConcurrent bounds requests in flight (0: 3); RequestsPerMinute is a
	// token bucket with burst = RequestsPerMinute (0: 600). Both apply to every
	// attempt, retries included, and are per Client: share one Client.
	MaxConcurrent     int
	RequestsPerMinute int

	RetryBaseDelay time.Duration // 0: 1s
	RetryMaxDelay  time.Duration // 0: 30s
	// MaxRetries is the number of retries after the first attempt (0: 8); the
	// caller's ctx bounds the loop too.
	MaxRetries int

	Logger *slog.Logger // nil: discard
}

// String keeps the token out of anything that prints a Config with %v.
func (c Config) String() string {
	tok := "none"
	if c.Token != "" {
		tok = "[REDACTED]"
	}
	return fmt.Sprintf("synapse.Config{RepoEndpoint:%q FileEndpoint:%q Token:%s UserAgent:%q MaxConcurrent:%d RequestsPerMinute:%d RetryBaseDelay:%s RetryMaxDelay:%s MaxRetries:%d}",
		c.RepoEndpoint, c.FileEndpoint, tok, c.UserAgent, c.MaxConcurrent, c.RequestsPerMinute, c.RetryBaseDelay, c.RetryMaxDelay, c.MaxRetries)
}

// GoString covers %#v, which would otherwise print the token verbatim.
func (c Config) GoString() string { return c.String() }

// LogValue keeps the token out of slog output.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("repoEndpoint", c.RepoEndpoint),
		slog.String("fileEndpoint", c.FileEndpoint),
		slog.Bool("token", c.Token != ""),
		slog.String("userAgent", c.UserAgent),
		slog.Int("maxConcurrent", c.MaxConcurrent),
		slog.Int("requestsPerMinute", c.RequestsPerMinute),
		slog.Int("maxRetries", c.MaxRetries),
	)
}

// Token sources reported by FindToken.
const (
	EnvAuthToken   = "SYNAPSE_AUTH_TOKEN"
	EnvProfile     = "SYNAPSE_PROFILE"
	ConfigFileName = ".synapseConfig"
)

// FindToken finds the personal access token to use, in this order:
//
//  1. explicit (a command-line flag), source "flag";
//  2. env SYNAPSE_AUTH_TOKEN, source "SYNAPSE_AUTH_TOKEN";
//  3. homeDir/.synapseConfig, key authtoken: with SYNAPSE_PROFILE=NAME the
//     section [profile NAME] (an error if the section is missing or has no
//     authtoken, because silently going anonymous would hide a typo);
//     otherwise [default], then legacy [authentication]. Source
//     "~/.synapseConfig [section]".
//
// The env var deliberately wins over the file, unlike the Python client: a
// job scheduler can then override a user's file without editing it.
// No token anywhere returns ("", "", nil), meaning anonymous; a missing file
// is not an error. env nil means no environment; homeDir "" skips the file.
// Errors never contain the token.
func FindToken(explicit string, env func(string) string, homeDir string) (token, source string, err error) {
	if t := strings.TrimSpace(explicit); t != "" {
		return t, "flag", nil
	}
	getenv := func(string) string { return "" }
	if env != nil {
		getenv = env
	}
	if t := strings.TrimSpace(getenv(EnvAuthToken)); t != "" {
		return t, EnvAuthToken, nil
	}
	if homeDir == "" {
		return "", "", nil
	}
	path := filepath.Join(homeDir, ConfigFileName)
	sections, err := readINI(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("synapse: reading %s: %w", path, err)
	}
	src := func(section string) string { return "~/" + ConfigFileName + " [" + section + "]" }

	if profile := strings.TrimSpace(getenv(EnvProfile)); profile != "" {
		candidates := []string{"profile " + profile}
		if profile == "default" { // the Python client spells the default profile [default]
			candidates = append(candidates, "default")
		}
		for _, name := range candidates {
			sec, ok := sections[name]
			if !ok {
				continue
			}
			if t := sec["authtoken"]; t != "" {
				return t, src(name), nil
			}
			return "", "", fmt.Errorf("synapse: %s: section [%s] (from %s) has no authtoken", path, name, EnvProfile)
		}
		return "", "", fmt.Errorf("synapse: %s: no section [profile %s] (from %s)", path, profile, EnvProfile)
	}
	for _, name := range []string{"default", "authentication"} {
		if t := sections[name]["authtoken"]; t != "" {
			return t, src(name), nil
		}
	}
	return "", "", nil
}

// readINI parses the subset of Python configparser syntax that
// ~/.synapseConfig uses: [section], key = value or key: value, keys
// case-insensitive, full-line # and ; comments. Section names are normalised
// to single spaces so "[profile   x]" still matches.
func readINI(path string) (map[string]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sections := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			name := strings.Join(strings.Fields(line[1:len(line)-1]), " ")
			if sections[name] == nil {
				sections[name] = map[string]string{}
			}
			cur = sections[name]
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 || cur == nil {
			continue // not a key line, or keys before any section: configparser would refuse; we just ignore
		}
		key := strings.ToLower(strings.TrimSpace(line[:i]))
		cur[key] = strings.TrimSpace(line[i+1:])
	}
	return sections, sc.Err()
}
