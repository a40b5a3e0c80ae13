package devs3

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestChunkedReader(t *testing.T) {
	const sig = ";chunk-signature=" + "0000000000000000000000000000000000000000000000000000000000000000"
	tests := []struct {
		name, body, want string
		wantErr          bool
	}{
		{"two chunks", "5" + sig + "\r\nhello\r\n6" + sig + "\r\n world\r\n0" + sig + "\r\n\r\n", "hello world", false},
		{"empty", "0" + sig + "\r\n\r\n", "", false},
		{"truncated data", "5" + sig + "\r\nhel", "", true},
		{"no final chunk", "5" + sig + "\r\nhello\r\n", "", true},
		{"bad size", "zz" + sig + "\r\nhello\r\n", "", true},
		{"missing CRLF", "5" + sig + "\r\nhelloX\r\n0" + sig + "\r\n\r\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := io.ReadAll(&chunkedReader{r: bufio.NewReader(strings.NewReader(tt.body))})
			if tt.wantErr {
				if err == nil || errors.Is(err, io.EOF) {
					t.Fatalf("got %q, %v; want an error other than EOF", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
