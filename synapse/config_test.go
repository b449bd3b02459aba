package synapse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindToken(t *testing.T) {
	fullFile := `
# a comment
; another comment
[default]
authtoken = default-tok

[authentication]
authtoken=auth-tok

[profile  work]
username = me
  authtoken   =   work-tok  

[profile empty]
username = me
`
	tests := []struct {
		name       string
		explicit   string
		env        map[string]string
		file       *string // nil: no file
		wantToken  string
		wantSource string
		wantErr    string
	}{
		{name: "explicit wins over everything", explicit: " flag-tok ", env: map[string]string{"SYNAPSE_AUTH_TOKEN": "env-tok"}, file: &fullFile,
			wantToken: "flag-tok", wantSource: "flag"},
		{name: "env before file", env: map[string]string{"SYNAPSE_AUTH_TOKEN": "env-tok"}, file: &fullFile,
			wantToken: "env-tok", wantSource: "SYNAPSE_AUTH_TOKEN"},
		{name: "blank env ignored", env: map[string]string{"SYNAPSE_AUTH_TOKEN": "  "}, file: &fullFile,
			wantToken: "default-tok", wantSource: "~/.synapseConfig [default]"},
		{name: "default section", file: &fullFile, wantToken: "default-tok", wantSource: "~/.synapseConfig [default]"},
		{name: "legacy authentication section", file: ptr("[authentication]\nusername=x\nauthtoken = auth-tok\n"),
			wantToken: "auth-tok", wantSource: "~/.synapseConfig [authentication]"},
		{name: "default beats authentication regardless of order", file: ptr("[authentication]\nauthtoken=a\n[default]\nauthtoken=d\n"),
			wantToken: "d", wantSource: "~/.synapseConfig [default]"},
		{name: "profile via SYNAPSE_PROFILE", env: map[string]string{"SYNAPSE_PROFILE": "work"}, file: &fullFile,
			wantToken: "work-tok", wantSource: "~/.synapseConfig [profile work]"},
		{name: "profile default means [default]", env: map[string]string{"SYNAPSE_PROFILE": "default"}, file: &fullFile,
			wantToken: "default-tok", wantSource: "~/.synapseConfig [default]"},
		{name: "missing profile is an error", env: map[string]string{"SYNAPSE_PROFILE": "nope"}, file: &fullFile,
			wantErr: "no section [profile nope]"},
		{name: "profile without authtoken is an error", env: map[string]string{"SYNAPSE_PROFILE": "empty"}, file: &fullFile,
			wantErr: "has no authtoken"},
		{name: "missing file is anonymous"},
		{name: "file without token is anonymous", file: ptr("[default]\nusername = me\n")},
		{name: "commented-out token is ignored", file: ptr("[default]\n# authtoken = old\n;authtoken = older\n")},
		{name: "colon separator and key case", file: ptr("[default]\nAuthToken: colon-tok\n"),
			wantToken: "colon-tok", wantSource: "~/.synapseConfig [default]"},
		{name: "token with equals signs kept whole", file: ptr("[default]\nauthtoken = a.b=c==\n"),
			wantToken: "a.b=c==", wantSource: "~/.synapseConfig [default]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			if tt.file != nil {
				if err := os.WriteFile(filepath.Join(home, ".synapseConfig"), []byte(*tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env := func(k string) string { return tt.env[k] }
			tok, src, err := FindToken(tt.explicit, env, home)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				for _, secret := range []string{"default-tok", "auth-tok", "work-tok"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error leaks a token: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tok != tt.wantToken || src != tt.wantSource {
				t.Fatalf("got (%q, %q), want (%q, %q)", tok, src, tt.wantToken, tt.wantSource)
			}
		})
	}
}

func TestFindTokenNilEnvAndNoHome(t *testing.T) {
	tok, src, err := FindToken("", nil, "")
	if tok != "" || src != "" || err != nil {
		t.Fatalf("got (%q, %q, %v), want anonymous", tok, src, err)
	}
}

func TestFindTokenUnreadableFileIsError(t *testing.T) {
	home := t.TempDir()
	// A directory where the file should be: not "missing", so it must fail.
	if err := os.Mkdir(filepath.Join(home, ".synapseConfig"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := FindToken("", nil, home); err == nil {
		t.Fatal("want error for unreadable config file")
	}
}

func ptr[T any](v T) *T { return &v }
