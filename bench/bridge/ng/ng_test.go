package ng

import (
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := map[string]any{"command": "offer", "call-id": "c1", "rtcp-mux": []any{"demux"}, "n": int64(-7),
		"nested": map[string]any{"a": []any{"x", int64(1)}}}
	msg, err := Join("abc", in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "abc d7:call-id2:c17:command5:offer1:ni-7e6:nestedd1:al1:xi1eee8:rtcp-muxl5:demuxee"; string(msg) != want {
		t.Fatalf("got %q\nwant %q", msg, want)
	}
	cookie, out, err := Split(msg)
	if err != nil || cookie != "abc" || !reflect.DeepEqual(out, in) {
		t.Fatalf("split: %q %#v %v", cookie, out, err)
	}
	// rtpengine's own example.
	if _, d, err := Split([]byte("abc123 d6:result4:ponge")); err != nil || Str(d, "result") != "pong" {
		t.Fatalf("pong: %#v %v", d, err)
	}
	for _, bad := range []string{"x d", "x d3:abc", "x l", "x 5:ab", "x ie", "x i1x"} {
		if _, _, err := Split([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}
