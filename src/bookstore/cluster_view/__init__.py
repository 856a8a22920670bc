"""The cluster view's data, served by the orchestrator's app beside the checkout: the
services' status (`probe`, its values in `state`), the live charts (`charts` over
`sampler`), their JSON (`responses`) and routes (`routes`). The page itself is
bookstore.web's cluster.html."""
