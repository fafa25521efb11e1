module herald.dev/tools/image/pause

go 1.22
