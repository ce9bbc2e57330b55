package coordinator

import (
	"reflect"
	"strings"
	"testing"

	"github.com/strand-ml/strand/mesh"
)

func TestAssign(t *testing.T) {
	cases := []struct {
		name    string
		in      []Joiner
		want    []int
		wantErr string
	}{
		{
			name: "launcher-chosen ranks are kept",
			in:   []Joiner{{Host: "a", WantRank: 2}, {Host: "a", WantRank: 0}, {Host: "b", WantRank: 1}},
			want: []int{2, 0, 1},
		},
		{
			name: "node then local rank, whatever the arrival order",
			in: []Joiner{
				{Host: "b", NodeRank: 1, LocalRank: 1, WantRank: -1, Order: 0},
				{Host: "a", NodeRank: 0, LocalRank: 1, WantRank: -1, Order: 1},
				{Host: "b", NodeRank: 1, LocalRank: 0, WantRank: -1, Order: 2},
				{Host: "a", NodeRank: 0, LocalRank: 0, WantRank: -1, Order: 3},
			},
			want: []int{3, 1, 2, 0},
		},
		{
			name: "unknown node ranks fall back to host names",
			in: []Joiner{
				{Host: "z", NodeRank: -1, LocalRank: 0, WantRank: -1},
				{Host: "m", NodeRank: -1, LocalRank: 0, WantRank: -1},
			},
			want: []int{1, 0},
		},
		{name: "duplicate rank", in: []Joiner{{WantRank: 0}, {WantRank: 0}}, wantErr: "asked for twice"},
		{name: "rank outside world", in: []Joiner{{WantRank: 0}, {WantRank: 5}}, wantErr: "world of 2"},
		{name: "mixed", in: []Joiner{{WantRank: 0}, {WantRank: -1}}, wantErr: "either all or none"},
		{name: "empty", in: nil, wantErr: "no workers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Assign(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Assign = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestPlace(t *testing.T) {
	m := mesh.Mesh{DP: 2, TP: 2, PP: 2}
	ps, err := Place(m)
	if err != nil {
		t.Fatal(err)
	}
	// rank = (pp*DP + dp)*TP + tp
	want := map[int]Placement{
		0: {Rank: 0, Coord: mesh.Coord{}, DP: []int{0, 2}, TP: []int{0, 1}, PP: []int{0, 4}},
		3: {Rank: 3, Coord: mesh.Coord{DP: 1, TP: 1}, DP: []int{1, 3}, TP: []int{2, 3}, PP: []int{3, 7}},
		5: {Rank: 5, Coord: mesh.Coord{TP: 1, PP: 1}, DP: []int{5, 7}, TP: []int{4, 5}, PP: []int{1, 5}},
		6: {Rank: 6, Coord: mesh.Coord{DP: 1, PP: 1}, DP: []int{4, 6}, TP: []int{6, 7}, PP: []int{2, 6}},
	}
	for r, w := range want {
		p := ps[r]
		if p.Rank != w.Rank || p.Coord != w.Coord || !reflect.DeepEqual(p.DP, w.DP) || !reflect.DeepEqual(p.TP, w.TP) || !reflect.DeepEqual(p.PP, w.PP) {
			t.Errorf("Place[%d] = %+v, want %+v", r, p, w)
		}
		if len(p.World) != 8 || p.World[7] != 7 {
			t.Errorf("Place[%d].World = %v", r, p.World)
		}
	}
	if _, err := Place(mesh.Mesh{DP: 0, TP: 1, PP: 1}); err == nil {
		t.Fatal("invalid mesh accepted")
	}
}

func TestSpreadTP(t *testing.T) {
	m := mesh.Mesh{DP: 2, TP: 2, PP: 1}
	if bad := SpreadTP(m, []string{"a", "a", "b", "b"}); len(bad) != 0 {
		t.Fatalf("good placement flagged: %v", bad)
	}
	bad := SpreadTP(m, []string{"a", "b", "a", "b"})
	if !reflect.DeepEqual(bad, [][]int{{0, 1}, {2, 3}}) {
		t.Fatalf("SpreadTP = %v", bad)
	}
}

func TestGossipName(t *testing.T) {
	if r, ok := rankFromGossipName(GossipName(12)); !ok || r != 12 {
		t.Fatalf("round trip: %d %v", r, ok)
	}
	for _, s := range []string{"coordinator", "rank-", "rank-3x", "rank--1x"} {
		if _, ok := rankFromGossipName(s); ok {
			t.Errorf("%q parsed as a rank", s)
		}
	}
}
