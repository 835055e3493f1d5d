//! Access control: who may do what in a project. The application authenticates its
//! users; labeldb keeps each project's members, their roles and their data scopes
//! (docs/access.md). Whoever can read the database's directory reads everything: the
//! file system stays the trust boundary.

mod members;
