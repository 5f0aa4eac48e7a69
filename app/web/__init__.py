"""The doors people and programs use over HTTP: the pages, the JSON API, the
`flask chat` commands, and the cross-site and header rules they share."""
