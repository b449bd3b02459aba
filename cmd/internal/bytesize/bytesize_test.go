package bytesize

import "testing"

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true},
		{"512M", 512 << 20, true},
		{"2G", 2 << 30, true},
		{"1t", 1 << 40, true},
		{"64KiB", 64 << 10, true},
		{"10MB", 10 << 20, true},
		{"", 0, false},
		{"lots", 0, false},
		{"-1G", 0, false},
		{"0", 0, false},
		{"G", 0, false},
		{"1.5G", 0, false},
		{"12x", 0, false},
	}
	for _, tc := range cases {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
