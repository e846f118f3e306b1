DROP TABLE django_link_states;
