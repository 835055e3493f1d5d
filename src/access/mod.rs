//! Access control: who may do what in a project. The application authenticates its
//! users; labeldb keeps each project's members, their roles and their data scopes, and
//! a [`Session`](session::Session) authorizes every call of one user in one place,
//! `Session::authorize` (docs/access.md). Whoever can read the database's directory
//! reads everything: the file system stays the trust boundary.

mod members;
pub(crate) mod policy;
mod reads;
pub(crate) mod session;
mod writes;
