package rdb

import "testing"

func TestLZFDecompress(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		n       int
		want    string
		wantErr bool
	}{
		{"literal", []byte{2, 'a', 'b', 'c'}, 3, "abc", false},
		{"empty", nil, 0, "", false},
		{"short ref", []byte{1, 'a', 'b', 0x20, 1}, 5, "ababa", false},
		{"overlapping ref", []byte{0, 'x', 0x40, 0}, 5, "xxxxx", false},
		{"long ref", []byte{2, 'a', 'b', 'c', 0xE0, 0, 2}, 12, "abcabcabcabc", false},
		{"long ref extended", []byte{0, 'z', 0xE0, 10, 0}, 20, "zzzzzzzzzzzzzzzzzzzz", false},
		{"literal after ref", []byte{1, 'a', 'b', 0x20, 1, 0, '!'}, 6, "ababa!", false},
		{"literal past input", []byte{5, 'a'}, 6, "", true},
		{"ref before start", []byte{0, 'a', 0x20, 5}, 4, "", true},
		{"ref truncated", []byte{0, 'a', 0x20}, 4, "", true},
		{"ref length truncated", []byte{0, 'a', 0xE0}, 12, "", true},
		{"output too long", []byte{2, 'a', 'b', 'c'}, 2, "", true},
		{"ref output too long", []byte{0, 'a', 0x40, 0}, 3, "", true},
		{"output too short", []byte{2, 'a', 'b', 'c'}, 4, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lzfDecompress(tt.in, tt.n)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
