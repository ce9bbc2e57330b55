package launcher

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// withRank tags one line of a worker's output with its rank under
// --log-format json, keeping the output one JSON object per line: an
// object without a "rank" key gets "rank":N as its first key, an object
// with one is kept, and anything else (a worker's plain text) becomes
// {"rank":N,"level":"info","msg":TEXT}. line ends in '\n'.
func withRank(line []byte, rank int) []byte {
	return withKey(line, "rank", strconv.Itoa(rank))
}

// withKey is withRank for any key and JSON value (the coordinator's lines
// get "component":"coordinator").
func withKey(line []byte, key, value string) []byte {
	body := bytes.TrimRight(line, "\r\n")
	r := value
	head := `{"` + key + `":`
	var obj map[string]json.RawMessage
	if len(body) > 0 && body[0] == '{' && json.Unmarshal(body, &obj) == nil {
		if _, ok := obj[key]; ok {
			return append(body, '\n')
		}
		out := append([]byte(head), r...)
		if len(obj) > 0 {
			out = append(out, ',')
		}
		out = append(out, bytes.TrimSpace(body)[1:]...)
		return append(out, '\n')
	}
	msg, _ := json.Marshal(string(body))
	out := append([]byte(head), r...)
	out = append(out, `,"level":"info","msg":`...)
	out = append(out, msg...)
	return append(out, '}', '\n')
}
