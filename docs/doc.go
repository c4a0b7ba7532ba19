// Package docs holds bal's manual; its test checks the links.
//
// The manual is the Markdown in this folder, linked from README.md and
// README.ko.md at the top of the repository. links_test.go checks that every
// relative link in those files resolves to a file, and every #anchor to a
// heading of its target, as GitHub renders them.
package docs
