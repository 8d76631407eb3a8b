//! The admin pages under `/admin` (admins only, by `policy::Action::Administer`): the
//! users, the audit log and the jobs dashboard. Each page module asks the policy first.

pub mod audit;
pub mod db;
pub mod jobs;
pub mod users;

use poem::Route;

pub fn routes(route: Route) -> Route {
    let route = users::routes(route);
    let route = audit::routes(route);
    jobs::routes(route)
}
