"""Worker processes: the wire protocol, the child loop, and front-side supervision."""
